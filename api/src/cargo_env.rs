//! Running cargo from a program cargo started: `cargo xtask`, or a test that builds a binary
//! it needs. Cargo gives such a program the variables of its own crate (CARGO_PKG_NAME,
//! CARGO_MANIFEST_DIR, ...). Passed on to a nested cargo they change what build scripts
//! see: ring's reruns whenever they change (it names its symbols after them), and ring,
//! rustls, tonic and all that stands on them are compiled again, then again by the next
//! plain `cargo` call. Not built for wasm.

use std::process::Command;

/// Whether `name` is a variable cargo sets for the crate it runs (its manifest and package),
/// not configuration a user set (CARGO_HOME, CARGO_TARGET_DIR, CARGO_BUILD_JOBS, ...).
pub fn set_for_the_running_crate(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || name.starts_with("CARGO_BIN_EXE_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
        )
}

/// `cmd` without the running crate's variables, so a nested cargo builds as one started
/// from a shell would and reuses what that one built.
pub fn nested(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_the_running_crate) {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_crates_variables_go_and_configuration_stays() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_exile-master",
            "CARGO_TARGET_TMPDIR",
        ] {
            assert!(set_for_the_running_crate(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_INCREMENTAL",
            "CARGO_TERM_COLOR",
            "RUSTC_WORKSPACE_WRAPPER",
            "PATH",
        ] {
            assert!(!set_for_the_running_crate(name), "{name}");
        }
    }

    #[test]
    fn a_nested_cargo_gets_none_of_them() {
        // This test runs under cargo, which set the crate's variables for it.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let mut cmd = Command::new("env");
        nested(&mut cmd);
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().any(|k| k == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(
            removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().all(|k| set_for_the_running_crate(k)));
    }
}
