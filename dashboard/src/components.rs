//! Reusable pieces of the pages, one component per file.

pub mod confirm_dialog;
pub mod drawer;
pub mod dropdown;
pub mod instance_row;
pub mod resource_progress_bar;
pub mod spawner_table;
pub mod stats_card;
