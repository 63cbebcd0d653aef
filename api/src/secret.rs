//! Secrets given on a command line: every local user can read a process's arguments
//! (`ps`, `/proc/<pid>/cmdline`), so each secret flag of the master, the spawner and exilectl
//! has an environment or file form, and the command-line form warns.

use std::ffi::OsString;

/// Whether `flag` (`--admin-password`) is among `args`, alone or as `--flag=value`.
pub fn given_on_command_line(args: impl IntoIterator<Item = OsString>, flag: &str) -> bool {
    let with_value = format!("{flag}=");
    args.into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        // Nothing after `--` is a flag of ours.
        .take_while(|a| a != "--")
        .any(|a| a == flag || a.starts_with(&with_value))
}

/// The warning for a secret given with `flag` on the command line; `instead` says how else
/// to give it ("with EXILE_PASSWORD or --password-stdin").
pub fn command_line_warning(flag: &str, instead: &str) -> String {
    format!(
        "{flag} on the command line can be read by every local user (ps, /proc/<pid>/cmdline); give it {instead}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_flag_is_found_alone_or_with_its_value_and_never_after_the_separator() {
        let flag = "--admin-password";
        assert!(given_on_command_line(
            args(&["m", "--admin-password", "x"]),
            flag
        ));
        assert!(given_on_command_line(
            args(&["m", "--admin-password=x"]),
            flag
        ));
        assert!(!given_on_command_line(
            args(&["m", "--admin-password-file=f"]),
            flag
        ));
        assert!(!given_on_command_line(
            args(&["m", "--", "--admin-password=x"]),
            flag
        ));
        assert!(!given_on_command_line(args(&["m"]), flag));
        let w = command_line_warning(flag, "with EXILE_MASTER_ADMIN_PASSWORD");
        assert!(w.starts_with("--admin-password on the command line"));
        assert!(w.ends_with("give it with EXILE_MASTER_ADMIN_PASSWORD"));
    }
}
