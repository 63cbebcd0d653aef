//! exilectl against a master serving TLS: the CA comes from --ca-file and is kept in the
//! context; a master whose certificate is not trusted is one sentence and exit code 7.

use exile_testkit::{Sandbox, SandboxOptions};

use crate::harness::Ctl;

async fn tls_ctl() -> Ctl {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        tls: true,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    Ctl {
        sb,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_master_certificate_is_exit_code_7_with_what_to_pass() {
    let ctl = tls_ctl().await;
    let url = ctl.sb.master_url();
    let password = format!("{}\n", ctl.sb.admin_password());
    // The system roots do not know the sandbox's CA.
    let run = ctl
        .run_with(
            &[
                "login",
                "--master",
                &url,
                "--password-stdin",
                "--timeout",
                "10s",
            ],
            &[],
            &password,
        )
        .await
        .failure_code(7);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the master at {url}: the master's TLS certificate is not trusted"
        )),
        "{run:#?}"
    );
    assert!(run.stderr.contains("--ca-file"), "{run:#?}");

    // Another CA is no better.
    let other = exile_testkit::tls::certs::new_ca("someone else").unwrap();
    let other_file = ctl.dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other.cert).unwrap();
    let other_file = other_file.display().to_string();
    ctl.run_with(
        &[
            "login",
            "--master",
            &url,
            "--password-stdin",
            "--ca-file",
            &other_file,
        ],
        &[],
        &password,
    )
    .await
    .failure_code(7);

    // The right one logs in, and later commands find it in the context.
    let ca = ctl.sb.ca_file().unwrap().display().to_string();
    ctl.run_with(
        &[
            "login",
            "--master",
            &url,
            "--password-stdin",
            "--ca-file",
            &ca,
        ],
        &[],
        &password,
    )
    .await
    .success();
    let config = std::fs::read_to_string(ctl.config_path()).unwrap();
    assert!(config.contains("ca_file"), "{config}");
    let who = ctl.run(&["whoami", "-o", "json"]).await.success().json();
    assert_eq!(who["subject"], "admin", "{who:#}");
    ctl.run(&["spawner", "list"]).await.success();
    // A game spawned over TLS runs on the spawner, whose link is TLS too.
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    ctl.wait_state(&id, &["ready", "running"]).await;
    ctl.shutdown().await;
}
