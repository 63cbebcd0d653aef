//! Uploaded builds through a real master and gRPC clients: both upload forms (with a resumed
//! part), list/get, activation and delete rules, chunk dedupe and collection on disk,
//! delivery to a spawner's credential, hostile archives and roles.

use std::io::{Cursor, Write};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sha2::Digest;
use tonic::Code;

use exile_api::v1 as pb;
use exile_api::v1::build_service_client::BuildServiceClient;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_testkit::{Authed, Bearer, Sandbox, SandboxOptions, eventually};

const PART: usize = exile_api::build::MAX_UPLOAD_PART;

fn sha256(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Bytes that do not repeat, so chunk boundaries come from content.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

const MANIFEST: &str = "[run]\ncommand = \"./run.sh --port {port:game} --query {port:query}\"\n[[ports]]\nname = \"game\"\nprotocol = \"udp\"\n[[ports]]\nname = \"query\"\nprotocol = \"tcp\"\n";

/// A zip of a game server zipped with its folder, as studios ship them: a start script,
/// the manifest and `payload` (stored, so its bytes appear as they are in the archive).
fn game_zip(payload: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("oa-server/run.sh", stored.unix_permissions(0o755))
        .unwrap();
    w.write_all(b"#!/bin/sh\nexec sleep 3600\n").unwrap();
    w.start_file("oa-server/exile-build.toml", stored).unwrap();
    w.write_all(MANIFEST.as_bytes()).unwrap();
    w.start_file("oa-server/data/payload.bin", stored).unwrap();
    w.write_all(payload).unwrap();
    w.finish().unwrap().into_inner()
}

fn metadata(name: &str, version: &str, data: &[u8]) -> pb::UploadBuildMetadata {
    pb::UploadBuildMetadata {
        name: name.into(),
        version: version.into(),
        sha256: sha256(data),
        size: data.len() as u64,
        file_name: format!("{name}.zip"),
        manifest: String::new(),
    }
}

/// Uploads with the client stream: metadata, then 1 MiB pieces.
async fn push(
    c: &mut BuildServiceClient<Authed>,
    m: pb::UploadBuildMetadata,
    data: &[u8],
) -> Result<pb::UploadBuildResponse, tonic::Status> {
    use pb::upload_build_request::Kind;
    let mut msgs = vec![pb::UploadBuildRequest {
        kind: Some(Kind::Metadata(m)),
    }];
    msgs.extend(data.chunks(PART).map(|p| pb::UploadBuildRequest {
        kind: Some(Kind::Data(p.to_vec())),
    }));
    c.upload_build(futures::stream::iter(msgs))
        .await
        .map(tonic::Response::into_inner)
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn blobs(sb: &Sandbox) -> usize {
    files_under(&sb.dir().join("master").join("blobs"))
}

fn uploads(sb: &Sandbox) -> usize {
    files_under(&sb.dir().join("master").join("uploads"))
}

fn spawner_credential(sb: &Sandbox) -> String {
    let file = std::fs::read_to_string(sb.dir().join("spawner-0").join("credential.json")).unwrap();
    file.split('"')
        .find(|s| s.starts_with("exc_"))
        .expect("credential in credential.json")
        .to_owned()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    exile_testkit::http_get(addr, path).await.unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_list_activate_deliver_delete_and_collect() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let mut builds = admin.builds.clone();
    let mut watch = admin
        .events
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert!(
        matches!(first.kind, Some(pb::watch_event::Kind::Snapshot(ref s)) if s.builds.is_empty()),
        "{first:?}"
    );

    // Stream form.
    let archive = game_zip(&noise(1, 5 * 1024 * 1024));
    let r = push(
        &mut builds,
        metadata("openarena", "0.8.8", &archive),
        &archive,
    )
    .await
    .unwrap();
    let v1 = r.build.unwrap();
    assert!(v1.id.starts_with("bld-"), "{}", v1.id);
    assert_eq!(v1.sha256, sha256(&archive));
    assert_eq!(v1.size, archive.len() as u64);
    assert_eq!(v1.format, pb::ArchiveFormat::Zip as i32);
    assert_eq!(v1.file_count, 3);
    assert_eq!(
        v1.manifest, MANIFEST,
        "the manifest under the stripped top folder"
    );
    assert_eq!(
        v1.command,
        "./run.sh --port {port:game} --query {port:query}"
    );
    let ports: Vec<&str> = v1.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ports, ["game", "query"]);
    assert_eq!(v1.created_by, "admin");
    assert!(v1.chunk_count >= 3);
    assert_eq!(
        (r.new_chunks, r.new_bytes),
        (v1.chunk_count, archive.len() as u64)
    );
    assert_eq!(blobs(&sb), v1.chunk_count as usize);
    assert_eq!(uploads(&sb), 0);

    // Watchers hear of it.
    let announced = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = watch.next().await.unwrap().unwrap();
            if let Some(pb::watch_event::Kind::BuildUpdated(b)) = ev.kind {
                return b;
            }
        }
    })
    .await
    .expect("a BuildUpdated event");
    assert_eq!(announced.id, v1.id);

    // Begin/Part/Finish with the same archive as another version; one part is sent at the
    // wrong offset (as after a lost answer) and the master says where to go on.
    let upload_id = builds
        .begin_upload(pb::BeginUploadRequest {
            metadata: Some(metadata("openarena", "0.8.9", &archive)),
        })
        .await
        .unwrap()
        .into_inner()
        .upload_id;
    let part = |offset: usize| pb::UploadPartRequest {
        upload_id: upload_id.clone(),
        offset: offset as u64,
        data: archive[offset..(offset + PART).min(archive.len())].to_vec(),
    };
    let got = builds.upload_part(part(0)).await.unwrap().into_inner();
    assert_eq!(got.received, PART as u64);
    let e = builds.upload_part(part(0)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains(&format!("offset {PART}")),
        "{}",
        e.message()
    );
    let mut offset = PART;
    while offset < archive.len() {
        offset = builds
            .upload_part(part(offset))
            .await
            .unwrap()
            .into_inner()
            .received as usize;
    }
    let r2 = builds
        .finish_upload(pb::FinishUploadRequest {
            upload_id: upload_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let v2 = r2.build.unwrap();
    assert_eq!(
        (r2.new_chunks, r2.new_bytes),
        (0, 0),
        "an unchanged archive stores nothing"
    );
    assert_eq!(v2.chunk_count, v1.chunk_count);
    assert_eq!(blobs(&sb), v1.chunk_count as usize);
    // The finished upload is gone.
    let e = builds.upload_part(part(0)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let list = builds
        .list_builds(pb::ListBuildsRequest {
            name: "openarena".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .builds;
    let versions: Vec<&str> = list.iter().map(|b| b.version.as_str()).collect();
    assert_eq!(versions, ["0.8.9", "0.8.8"]);
    for key in [v1.id.clone(), "openarena@0.8.8".to_owned()] {
        let got = builds
            .get_build(pb::GetBuildRequest { build: key })
            .await
            .unwrap()
            .into_inner()
            .build
            .unwrap();
        assert_eq!(
            (got.id.as_str(), got.sha256.as_str()),
            (v1.id.as_str(), v1.sha256.as_str())
        );
    }
    let e = builds
        .get_build(pb::GetBuildRequest {
            build: "openarena@9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = push(
        &mut builds,
        metadata("openarena", "0.8.8", &archive),
        &archive,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // A spawner fetches the chunks with its credential; concatenated they are the archive.
    let mut link = SpawnerLinkClient::with_interceptor(
        exile_testkit::connect(sb.master_addr()).await.unwrap(),
        Bearer::new(&spawner_credential(&sb)).unwrap(),
    );
    let list = link
        .get_build_chunks(pb::GetBuildChunksRequest {
            build_id: v2.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.build.unwrap().sha256, v2.sha256);
    assert_eq!(list.manifest, MANIFEST);
    let hashes: Vec<String> = list.chunks.iter().map(|c| c.sha256.clone()).collect();
    let mut stream = link
        .fetch_chunks(pb::FetchChunksRequest {
            sha256: hashes.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut joined = Vec::new();
    let mut seen = Vec::new();
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        assert_eq!(sha256(&c.data), c.sha256);
        seen.push(c.sha256);
        joined.extend(c.data);
    }
    assert_eq!(seen, hashes, "in the order asked");
    assert!(joined == archive);
    let served = metric(
        &http_get(sb.master_addr(), "/metrics").await,
        "exile_build_bytes_served_total",
    );
    assert_eq!(served, archive.len() as u64);
    let e = link
        .fetch_chunks(pb::FetchChunksRequest {
            sha256: vec!["0".repeat(64)],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Activate 0.8.8 everywhere: it cannot be deleted; 0.8.9 can.
    let active = builds
        .activate_build(pb::ActivateBuildRequest {
            build: "openarena@0.8.8".into(),
            spawner_selector: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .build
        .unwrap();
    assert_eq!(active.activations.len(), 1);
    assert!(active.activations[0].selector.is_empty());
    assert_eq!(active.activations[0].activated_by, "admin");
    let e = builds
        .delete_build(pb::DeleteBuildRequest {
            build: "openarena@0.8.8".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("active version"), "{}", e.message());
    let d = builds
        .delete_build(pb::DeleteBuildRequest {
            build: "openarena@0.8.9".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (d.freed_chunks, d.freed_bytes),
        (0, 0),
        "0.8.8 still uses every chunk"
    );
    assert_eq!(blobs(&sb), v1.chunk_count as usize);

    // A version with other bytes, then deleted: exactly its own chunks leave the disk.
    let other = game_zip(&noise(2, 3 * 1024 * 1024));
    let r3 = push(&mut builds, metadata("openarena", "0.9.0", &other), &other)
        .await
        .unwrap();
    assert!(r3.new_chunks > 0);
    assert_eq!(blobs(&sb), (v1.chunk_count + r3.new_chunks) as usize);
    let d = builds
        .delete_build(pb::DeleteBuildRequest {
            build: "openarena@0.9.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (d.freed_chunks, d.freed_bytes),
        (r3.new_chunks, r3.new_bytes)
    );
    assert_eq!(blobs(&sb), v1.chunk_count as usize);
    let e = link
        .get_build_chunks(pb::GetBuildChunksRequest {
            build_id: r3.build.unwrap().id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The audit log names the builds; parts are not logged one by one.
    let audit = admin
        .system
        .clone()
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let has = |action: &str, target: &str, result: &str| {
        audit
            .iter()
            .any(|e| e.action == action && e.target == target && e.result == result)
    };
    assert!(has("UploadBuild", "openarena@0.8.8", "ok"), "{audit:?}");
    assert!(has("BeginUpload", "openarena@0.8.9", "ok"), "{audit:?}");
    assert!(has("FinishUpload", "openarena@0.8.9", "ok"), "{audit:?}");
    assert!(has("ActivateBuild", "openarena@0.8.8", "ok"), "{audit:?}");
    assert!(
        has("DeleteBuild", "openarena@0.8.8", "FailedPrecondition"),
        "{audit:?}"
    );
    assert!(has("DeleteBuild", "openarena@0.9.0", "ok"), "{audit:?}");
    assert!(!audit.iter().any(|e| e.action == "UploadPart"), "{audit:?}");
    sb.shutdown().await;
}

/// A tar whose second entry climbs out of the target (written byte for byte, as an
/// attacker's tool would).
fn zip_slip_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("run.sh", b"#!/bin/sh\n".as_slice()),
        ("../evil.sh", b"pwned"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A zip holding 256 MiB of zeros in a few hundred KiB (a bomb by ratio).
fn zip_bomb() -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    w.start_file("zeros.bin", opts).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        w.write_all(&zeros).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_at_upload_with_the_reason() {
    let sb = Sandbox::master_only().await.unwrap();
    let mut builds = sb.admin().await.unwrap().builds;
    let slip = zip_slip_tar();
    let e = push(&mut builds, metadata("evil", "1", &slip), &slip)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("refused") && e.message().contains("../evil.sh"),
        "{}",
        e.message()
    );
    let bomb = zip_bomb();
    let e = push(&mut builds, metadata("evil", "2", &bomb), &bomb)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(e.message().contains("compression bomb"), "{}", e.message());
    let e = push(
        &mut builds,
        metadata("evil", "3", b"not an archive at all"),
        b"not an archive at all",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("not a readable archive"),
        "{}",
        e.message()
    );
    // A manifest that hooks the game's loader through its environment.
    let zip = game_zip(b"payload");
    let mut m = metadata("evil", "4", &zip);
    m.manifest = format!("{MANIFEST}[env]\nLD_PRELOAD = \"/tmp/evil.so\"\n");
    let e = push(&mut builds, m, &zip).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("LD_PRELOAD") && e.message().contains("security.env_allowed"),
        "{}",
        e.message()
    );
    let list = builds
        .list_builds(pb::ListBuildsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .builds;
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(blobs(&sb), 0, "a refused archive stores no chunk");
    assert_eq!(uploads(&sb), 0);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_short_upload_leaves_nothing_and_a_viewer_cannot_upload() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let mut builds = admin.builds.clone();
    let archive = game_zip(&noise(3, 4 * 1024 * 1024));

    // The client goes away in the middle of the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = builds.clone();
    let call = tokio::spawn(async move {
        client
            .upload_build(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    use pb::upload_build_request::Kind;
    tx.send(pb::UploadBuildRequest {
        kind: Some(Kind::Metadata(metadata("oa", "1", &archive))),
    })
    .await
    .unwrap();
    tx.send(pb::UploadBuildRequest {
        kind: Some(Kind::Data(archive[..PART].to_vec())),
    })
    .await
    .unwrap();
    eventually(
        "the upload's file to appear",
        Duration::from_secs(10),
        || async { (uploads(&sb) == 1).then_some(()) },
    )
    .await
    .unwrap();
    call.abort();
    drop(tx);
    eventually(
        "the cut upload's file to go",
        Duration::from_secs(10),
        || async { (uploads(&sb) == 0).then_some(()) },
    )
    .await
    .unwrap();

    // A stream that ends early says how far it got.
    let e = push(
        &mut builds,
        metadata("oa", "1", &archive),
        &archive[..PART + 10],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(&format!("after {} of the", PART + 10)),
        "{}",
        e.message()
    );
    // Bytes that do not match the announced hash.
    let mut damaged = archive.clone();
    damaged[100] ^= 0xff;
    let e = push(&mut builds, metadata("oa", "1", &archive), &damaged)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("SHA-256"), "{}", e.message());
    assert!(
        builds
            .list_builds(pb::ListBuildsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .builds
            .is_empty()
    );
    assert_eq!((blobs(&sb), uploads(&sb)), (0, 0));

    // A viewer may look but not upload.
    let (viewer, _) = sb
        .clients_with_role("ci-viewer", pb::Role::Viewer)
        .await
        .unwrap();
    let e = push(
        &mut viewer.builds.clone(),
        metadata("oa", "1", &archive),
        &archive,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = viewer
        .builds
        .clone()
        .begin_upload(pb::BeginUploadRequest {
            metadata: Some(metadata("oa", "1", &archive)),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    viewer
        .builds
        .clone()
        .list_builds(pb::ListBuildsRequest::default())
        .await
        .unwrap();
    sb.shutdown().await;
}
