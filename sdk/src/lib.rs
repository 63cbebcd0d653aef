//! Exile game-server SDK.
