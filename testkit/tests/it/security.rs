//! Attacks on authentication, each asserted to fail: a password guesser cannot lock the
//! owner out, concurrent guesses cannot all reach the password hash, a forged
//! X-Forwarded-For from an untrusted peer changes nothing, and an enrollment flood is slowed
//! and cannot grow the audit log a row per attempt.

use tonic::transport::Channel;

use exile_api::v1 as pb;
use exile_api::v1::auth_service_client::AuthServiceClient;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_master::access::flood::ROWS_PER_WINDOW;
use exile_testkit::{Sandbox, SandboxOptions};

/// A sandbox with no spawners and these master flags.
async fn sandbox(master_args: &[&str]) -> Sandbox {
    Sandbox::start(SandboxOptions {
        spawners: 0,
        master_args: master_args.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A request that claims, through X-Forwarded-For, to come from `from`.
fn forwarded<T>(msg: T, from: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(from) = from {
        req.metadata_mut()
            .insert("x-forwarded-for", from.parse().unwrap());
    }
    req
}

/// One login of `username` from `from`; Ok(()) or the status code.
async fn login(
    ch: &Channel,
    from: Option<&str>,
    username: &str,
    password: &str,
) -> Result<(), tonic::Status> {
    let req = pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    };
    AuthServiceClient::new(ch.clone())
        .login(forwarded(req, from))
        .await
        .map(|_| ())
}

async fn audit(sb: &Sandbox, action: &str) -> Vec<pb::AuditEntry> {
    sb.admin()
        .await
        .unwrap()
        .system
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 1000,
            action: action.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// A counter from the master's /metrics.
async fn metric(sb: &Sandbox, name: &str) -> u64 {
    let text = exile_testkit::http_get(sb.master_addr(), "/metrics")
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

const ATTACKER: &str = "203.0.113.66";
const OWNER: &str = "198.51.100.7";

#[tokio::test(flavor = "multi_thread")]
async fn a_password_guesser_is_slowed_and_the_owner_still_logs_in() {
    // Both sources reach the master through a proxy on loopback that it trusts.
    let sb = sandbox(&["--trusted-proxy=127.0.0.1/32"]).await;
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let password = sb.admin_password().to_owned();
    let mut codes = Vec::new();
    for _ in 0..12 {
        let e = login(&ch, Some(ATTACKER), "admin", "wrong-password")
            .await
            .unwrap_err();
        if e.code() == tonic::Code::ResourceExhausted {
            assert!(e.message().contains("try again in"), "{e:?}");
        }
        codes.push(e.code());
    }
    use tonic::Code::{ResourceExhausted, Unauthenticated};
    assert_eq!(&codes[..5], &[Unauthenticated; 5], "{codes:?}");
    assert_eq!(&codes[5..], &[ResourceExhausted; 7], "{codes:?}");
    // The attacker's source is held back even with the right password: a guess that
    // happens to be right during the wait does not get in either...
    let e = login(&ch, Some(ATTACKER), "admin", &password)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ResourceExhausted, "{e:?}");
    // ...while the owner, from elsewhere, gets in at once, again and again.
    for i in 0..3 {
        login(&ch, Some(OWNER), "admin", &password)
            .await
            .unwrap_or_else(|e| panic!("owner refused on login {i}: {e:?}"));
    }
    // The audit log names each source as the proxy forwarded it.
    let entries = audit(&sb, "Login").await;
    let from = |peer: &str, ok: bool| {
        entries
            .iter()
            .filter(|e| e.peer == peer && (e.result == "ok") == ok)
            .count()
    };
    assert_eq!(from(OWNER, true), 3, "{entries:?}");
    // 13 failures: the first of the minute as rows, the rest counted into a summary.
    assert_eq!(
        from(ATTACKER, false),
        ROWS_PER_WINDOW as usize,
        "{entries:?}"
    );
    assert_eq!(from("127.0.0.1", false), 0, "{entries:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_guesses_cannot_all_reach_the_password_hash() {
    let sb = sandbox(&[]).await;
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let hashes_before = metric(&sb, "exile_password_hashes_total").await;
    let guesses = (0..20).map(|i| {
        let ch = ch.clone();
        async move {
            login(&ch, None, "admin", &format!("wrong-guess-{i}"))
                .await
                .unwrap_err()
                .code()
        }
    });
    let codes = futures::future::join_all(guesses).await;
    let count = |c: tonic::Code| codes.iter().filter(|&&x| x == c).count();
    let judged = count(tonic::Code::Unauthenticated);
    // Five free failures per source and account; the master may also turn a guess away
    // when all its hash slots are busy (UNAVAILABLE), but never lets more through.
    assert!(judged <= 5, "{codes:?}");
    assert!(count(tonic::Code::ResourceExhausted) >= 15, "{codes:?}");
    assert_eq!(
        judged + count(tonic::Code::ResourceExhausted) + count(tonic::Code::Unavailable),
        20,
        "{codes:?}"
    );
    let hashes = metric(&sb, "exile_password_hashes_total").await - hashes_before;
    assert_eq!(
        hashes, judged as u64,
        "one hash per judged guess: {codes:?}"
    );
    assert!(metric(&sb, "exile_auth_throttled_total").await >= 15);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // A proxy range is configured, but loopback is not in it.
    let sb = sandbox(&["--trusted-proxy=10.0.0.0/8"]).await;
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let mut codes = Vec::new();
    for i in 0..7 {
        // A fresh forged source each time, as a guesser dodging the throttle would send.
        let forged = format!("192.0.2.{i}");
        let e = login(&ch, Some(&forged), "admin", "wrong-password")
            .await
            .unwrap_err();
        codes.push(e.code());
    }
    assert_eq!(
        codes.last(),
        Some(&tonic::Code::ResourceExhausted),
        "the forged addresses did not spread the guesses: {codes:?}"
    );
    let entries = audit(&sb, "Login").await;
    let failed: Vec<&str> = entries
        .iter()
        .filter(|e| e.result != "ok")
        .map(|e| e.peer.as_str())
        .collect();
    assert_eq!(failed, vec!["127.0.0.1"; 7], "{entries:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enroll_flood_is_slowed_and_its_audit_rows_stay_bounded() {
    let mut sb = sandbox(&["--trusted-proxy=127.0.0.1/32"]).await;
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let mut link = SpawnerLinkClient::new(ch.clone());
    let flood = 60;
    let mut codes = Vec::new();
    for i in 0..flood {
        let req = pb::EnrollRequest {
            token: format!("exe_{i:064x}"),
            name: "intruder".into(),
            host: "intruder".into(),
        };
        codes.push(
            link.enroll(forwarded(req, Some(ATTACKER)))
                .await
                .unwrap_err()
                .code(),
        );
    }
    use tonic::Code::{ResourceExhausted, Unauthenticated};
    assert_eq!(&codes[..10], &[Unauthenticated; 10], "{codes:?}");
    assert!(
        codes[10..].iter().all(|c| *c == ResourceExhausted),
        "{codes:?}"
    );
    // A real spawner enrolling from another address is not held back by the flood.
    let admin = sb.admin().await.unwrap();
    exile_testkit::sim::enroll(&admin, sb.master_addr(), "honest")
        .await
        .unwrap();
    // Only the first failures of the minute got rows (the flood took well under a minute;
    // were it slower, a second minute could add as many again, never one per attempt).
    let rows = |entries: &[pb::AuditEntry]| {
        entries
            .iter()
            .filter(|e| e.peer == ATTACKER && e.result != "ok" && e.result != "aggregated")
            .count()
    };
    let entries = audit(&sb, "Enroll").await;
    let written = rows(&entries);
    assert!(
        (ROWS_PER_WINDOW as usize..=2 * ROWS_PER_WINDOW as usize).contains(&written),
        "{written} rows for {flood} failures: {entries:?}"
    );
    assert!(entries.iter().any(|e| e.result == "ok"), "{entries:?}");
    // The rest are counted, and their summary is written by the minute's end at the latest
    // (here: at shutdown).
    sb.stop_master().await.unwrap();
    sb.start_master().await.unwrap();
    let entries = audit(&sb, "Enroll").await;
    let counted: u64 = entries
        .iter()
        .filter(|e| e.peer == ATTACKER && e.result == "aggregated")
        .map(|e| {
            e.detail
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a count opens the summary: {e:?}"))
        })
        .sum();
    assert_eq!(
        rows(&entries) as u64 + counted,
        flood,
        "every failure is either a row or counted: {entries:?}"
    );
    sb.shutdown().await;
}

/// Lines of `child`'s stdout until `want` is among them (or it ends); what was read.
fn read_until(child: &mut std::process::Child, want: &str) -> String {
    use std::io::BufRead;
    let mut out = String::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        out.push_str(&line);
        out.push('\n');
        if line.contains(want) {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_password_goes_to_a_private_file_and_argv_secrets_warn() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // First start without a password: one is generated, written to a 0600 file and not
    // printed (stdout goes to the journal under systemd).
    let mut master = Command::new(exile_testkit::master_bin().unwrap())
        .arg(format!("--listen={addr}"))
        .arg(format!("--data-dir={}", dir.path().join("m").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = read_until(&mut master, "exilectl user passwd");
    let file = dir
        .path()
        .join("m")
        .join(exile_master::INITIAL_ADMIN_PASSWORD_FILE);
    assert!(out.contains(&file.display().to_string()), "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 16, "a generated password: {password:?}");
    assert!(!out.contains(&password), "the password was printed: {out}");
    exile_testkit::login(addr, "admin", &password)
        .await
        .unwrap();
    master.kill().unwrap();
    master.wait().unwrap();

    // A password on the command line works but warns that every local user can read it.
    let dir2 = tempfile::tempdir().unwrap();
    let addr2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut master = Command::new(exile_testkit::master_bin().unwrap())
        .arg(format!("--listen={addr2}"))
        .arg(format!("--data-dir={}", dir2.path().display()))
        .arg("--admin-password=visible-in-ps-output")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The master logs to stdout; the warning comes before it listens.
    let out = read_until(&mut master, "Exile master listening on");
    assert!(
        out.contains("--admin-password on the command line can be read by every local user"),
        "{out}"
    );
    exile_testkit::login(addr2, "admin", "visible-in-ps-output")
        .await
        .unwrap();
    master.kill().unwrap();
    master.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_session_cannot_guess_the_password_through_change_password() {
    let sb = sandbox(&[]).await;
    let addr = sb.master_addr();
    let stolen = exile_testkit::login(addr, "admin", exile_testkit::ADMIN_PASSWORD)
        .await
        .unwrap();
    let c = exile_testkit::clients(exile_testkit::connect(addr).await.unwrap(), &stolen).unwrap();
    let change = |current: &str| pb::ChangePasswordRequest {
        current_password: current.into(),
        new_password: "a-new-long-password-1".into(),
    };
    let mut codes = Vec::new();
    for i in 0..6 {
        let e = c
            .auth
            .clone()
            .change_password(change(&format!("guess-{i}")))
            .await
            .unwrap_err();
        codes.push(e.code());
        if e.code() == tonic::Code::ResourceExhausted {
            assert!(e.message().contains("try again in"), "{}", e.message());
        }
    }
    assert_eq!(codes[..3], [tonic::Code::PermissionDenied; 3], "{codes:?}");
    assert!(
        codes[3..].contains(&tonic::Code::ResourceExhausted),
        "guesses past the free ones are slowed: {codes:?}"
    );
    // The owner, signing in again, has a session of its own and changes the password.
    let own = exile_testkit::login(addr, "admin", exile_testkit::ADMIN_PASSWORD)
        .await
        .unwrap();
    let c = exile_testkit::clients(exile_testkit::connect(addr).await.unwrap(), &own).unwrap();
    c.auth
        .clone()
        .change_password(change(exile_testkit::ADMIN_PASSWORD))
        .await
        .unwrap();
    exile_testkit::login(addr, "admin", "a-new-long-password-1")
        .await
        .unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_credential_cannot_hold_more_than_its_share_of_streams() {
    use exile_master::access::streams::MAX_STREAMS_PER_PRINCIPAL;
    let sb = sandbox(&[]).await;
    let admin = sb.admin().await.unwrap();
    let watch = |c: &exile_testkit::Clients| {
        let mut events = c.events.clone();
        async move { events.watch(pb::WatchRequest::default()).await }
    };
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS_PER_PRINCIPAL {
        open.push(watch(&admin).await.unwrap().into_inner());
    }
    let e = watch(&admin).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("streams open"), "{}", e.message());
    // Unary calls are not streams: they still go through.
    admin
        .system
        .clone()
        .get_stats(pb::GetStatsRequest::default())
        .await
        .unwrap();
    // Another user is not held back by this one's streams.
    let (viewer, _) = sb
        .clients_with_role("watcher", pb::Role::Viewer)
        .await
        .unwrap();
    let mut theirs = watch(&viewer).await.unwrap().into_inner();
    assert!(theirs.message().await.unwrap().is_some());
    // A stream closed by its client gives its slot back.
    drop(open.pop());
    exile_testkit::eventually(
        "a slot given back",
        std::time::Duration::from_secs(10),
        || {
            let admin = admin.clone();
            async move { watch(&admin).await.ok().map(|_| ()) }
        },
    )
    .await
    .unwrap();
    sb.shutdown().await;
}

/// Whether the master closed `conn`: a read sees the end (or a reset) within `within`.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_one_address_cannot_take_every_connection() {
    use std::time::Duration;
    // In the TLS pass a silent connection is one that never starts its handshake: it holds a
    // slot and is cut off at the header timeout, or the idle timeout if shorter (2 s here).
    let sb = Sandbox::start(SandboxOptions {
        spawners: 0,
        master_args: ["--idle-timeout", "2s", "--max-connections-per-source", "8"]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let addr = sb.master_addr();
    // A Watch is a request in flight: it outlives the idle timeout.
    let mut watch = admin
        .events
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    // A connection that never sends a byte is closed.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(15)).await,
        "a silent connection outlived a 2 s idle timeout by 15 s"
    );
    // Over this address's share, connections are closed as they arrive; those admitted stay
    // open (for the idle timeout, longer than this look).
    let mut conns = Vec::new();
    for _ in 0..12 {
        conns.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let closed = futures::future::join_all(
        conns
            .iter_mut()
            .map(|c| closed_within(c, Duration::from_millis(500))),
    )
    .await;
    let refused = closed.iter().filter(|c| **c).count();
    let held: Vec<_> = conns
        .into_iter()
        .zip(&closed)
        .filter(|(_, c)| !**c)
        .collect();
    assert!(
        refused >= 4,
        "only {refused} of 12 connections over a cap of 8 were refused"
    );
    assert!(
        held.len() <= 8,
        "{} connections held from one address",
        held.len()
    );
    drop(held);
    // The watch still streams, and calls still go through once the slots come back.
    exile_testkit::eventually("calls served again", Duration::from_secs(15), || {
        let admin = admin.clone();
        async move {
            admin
                .system
                .clone()
                .get_stats(pb::GetStatsRequest::default())
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    admin
        .instances
        .clone()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap();
    drop(watch);
    sb.shutdown().await;
}
