//! Command-line values over the shared words of [`crate::limits`], for every binary with a
//! flag for them (exilectl's spawn flags, the spawner's defaults): the words, their meanings
//! in `--help` and what they name come from one place.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::limits::{RESTART_MODES, UNHEALTHY_ACTIONS, restart_mode_named, unhealthy_action_named};
use crate::v1;

/// A restart mode: `never`, `on-failure` or `always`.
pub fn restart_mode() -> impl TypedValueParser<Value = v1::RestartMode> {
    PossibleValuesParser::new(
        RESTART_MODES
            .iter()
            .map(|(word, _, meaning)| PossibleValue::new(*word).help(*meaning)),
    )
    .map(|word| restart_mode_named(&word).unwrap_or_default())
}

/// What follows Unhealthy: `leave` or `restart`.
pub fn unhealthy_action() -> impl TypedValueParser<Value = v1::UnhealthyAction> {
    PossibleValuesParser::new(
        UNHEALTHY_ACTIONS
            .iter()
            .map(|(word, _, meaning)| PossibleValue::new(*word).help(*meaning)),
    )
    .map(|word| unhealthy_action_named(&word).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Flags {
        #[arg(long, value_parser = restart_mode())]
        restart: Option<v1::RestartMode>,
        #[arg(long, value_parser = unhealthy_action(), default_value = "leave")]
        unhealthy: v1::UnhealthyAction,
    }

    #[test]
    fn the_words_parse_to_what_they_name_and_others_are_refused() {
        use clap::Parser;
        let f = Flags::try_parse_from(["x", "--restart", "on-failure"]).unwrap();
        assert_eq!(f.restart, Some(v1::RestartMode::OnFailure));
        assert_eq!(f.unhealthy, v1::UnhealthyAction::Leave);
        let f = Flags::try_parse_from(["x", "--unhealthy", "restart"]).unwrap();
        assert_eq!(f.restart, None);
        assert_eq!(f.unhealthy, v1::UnhealthyAction::Restart);
        let e = Flags::try_parse_from(["x", "--restart", "sometimes"]).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("never, on-failure, always"), "{e}");
    }
}
