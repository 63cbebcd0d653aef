//! Upload, delete and delivery rules against a real database and blob store. The archive
//! check is stood in by `fake_inspect` (bytes starting with `BAD` are refused), so these
//! tests pin the master's own rules whatever the archive module decides.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::registry::Registry;
use crate::store::Store;
use exile_api::build::MAX_UPLOAD_PART;

fn fake_inspect(path: &Path) -> exile_archive::Result<exile_archive::Summary> {
    let data = std::fs::read(path).map_err(|source| exile_archive::Error::Io {
        what: "reading",
        path: path.display().to_string(),
        source,
    })?;
    if data.starts_with(b"BAD") {
        return Err(exile_archive::Error::Unsafe {
            entry: "../evil".into(),
            reason: "it would land outside the target".into(),
        });
    }
    let manifest = data.strip_prefix(b"MANIFEST\n").map(|rest| {
        String::from_utf8_lossy(rest.split(|b| *b == 0).next().unwrap_or(rest)).into_owned()
    });
    Ok(exile_archive::Summary {
        format: Some(exile_archive::Format::Tar),
        files: 3,
        unpacked_bytes: data.len() as u64 * 2,
        manifest,
        ..Default::default()
    })
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    registry: Arc<Registry>,
    builds: Arc<Builds>,
}

const MAX_BYTES: u64 = 64 << 20;

async fn fixture_in(dir: tempfile::TempDir) -> Fixture {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("exile.db").display()
    );
    let store = Store::new(crate::db::open(&url).await.unwrap());
    let (registry, _persister) = Registry::load(store.clone(), Duration::from_secs(15))
        .await
        .unwrap();
    let builds = Builds::open(
        store.clone(),
        registry.clone(),
        BuildsConfig {
            data_dir: dir.path().to_owned(),
            max_bytes: MAX_BYTES,
            inspector: fake_inspect,
        },
    )
    .await
    .unwrap();
    Fixture {
        dir,
        store,
        registry,
        builds,
    }
}

async fn fixture() -> Fixture {
    fixture_in(tempfile::tempdir().unwrap()).await
}

fn metadata(name: &str, version: &str, data: &[u8]) -> pb::UploadBuildMetadata {
    pb::UploadBuildMetadata {
        name: name.into(),
        version: version.into(),
        sha256: blobs::sha256_hex(data),
        size: data.len() as u64,
        file_name: "server.tar".into(),
        manifest: String::new(),
    }
}

async fn send(
    b: &Builds,
    m: pb::UploadBuildMetadata,
    data: &[u8],
) -> Result<pb::UploadBuildResponse> {
    let mut up = b.begin(m)?;
    for part in data.chunks(MAX_UPLOAD_PART) {
        up.write(part.to_vec()).await?;
    }
    b.finish(up, "tester", &[]).await
}

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

impl Fixture {
    fn uploads_left(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn blob_count(&self) -> usize {
        BlobStore::open(self.dir.path().join("blobs"))
            .unwrap()
            .sweep_and_list()
            .unwrap()
            .len()
    }

    fn assert_nothing_stored(&self) {
        assert!(self.uploads_left().is_empty(), "{:?}", self.uploads_left());
        assert!(self.registry.list_builds("").is_empty());
    }
}

#[tokio::test]
async fn an_upload_is_stored_once_and_an_unchanged_archive_adds_no_chunks() {
    let f = fixture().await;
    let data = noise(7, 5 * 1024 * 1024 + 123);
    let r = send(&f.builds, metadata("oa", "1.0", &data), &data)
        .await
        .unwrap();
    let b = r.build.clone().unwrap();
    assert!(b.id.starts_with("bld-"), "{}", b.id);
    assert_eq!((b.name.as_str(), b.version.as_str()), ("oa", "1.0"));
    assert_eq!(b.sha256, blobs::sha256_hex(&data));
    assert_eq!(b.size, data.len() as u64);
    assert_eq!(b.format, pb::ArchiveFormat::Tar as i32);
    assert_eq!((b.file_count, b.created_by.as_str()), (3, "tester"));
    assert!(b.chunk_count >= 3);
    assert_eq!(r.new_chunks, b.chunk_count);
    assert_eq!(r.new_bytes, data.len() as u64);
    assert!(f.uploads_left().is_empty());

    // The chunk list, concatenated, is the archive.
    let list = f.builds.chunk_list(&b.id).await.unwrap();
    assert_eq!(list.build.unwrap().sha256, b.sha256);
    let mut joined = Vec::new();
    for c in &list.chunks {
        let chunk = f.builds.read_chunk(c.sha256.clone()).await.unwrap();
        assert_eq!(chunk.data.len() as u32, c.size);
        joined.extend(chunk.data);
    }
    assert!(joined == data);
    assert_eq!(f.builds.bytes_served(), data.len() as u64);

    // The same bytes as another version store nothing new.
    let again = send(&f.builds, metadata("oa", "1.1", &data), &data)
        .await
        .unwrap();
    assert_eq!((again.new_chunks, again.new_bytes), (0, 0));
    assert_eq!(f.blob_count(), b.chunk_count as usize);
    let listed: Vec<String> = f
        .registry
        .list_builds("oa")
        .into_iter()
        .map(|b| b.version)
        .collect();
    assert_eq!(listed, ["1.1", "1.0"], "newest first");
    assert_eq!(f.registry.get_build("oa@1.0").unwrap().id, b.id);
    assert_eq!(f.registry.get_build(&b.id).unwrap().version, "1.0");
    assert!(matches!(
        f.registry.get_build("oa@9"),
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn each_bad_upload_is_refused_and_leaves_nothing() {
    let f = fixture().await;
    let data = noise(1, 3000);
    let refuse = |m: pb::UploadBuildMetadata| {
        let e = f.builds.begin(m).err().expect("refused");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        e.to_string()
    };
    let m = || metadata("oa", "1", &data);
    assert!(
        refuse(pb::UploadBuildMetadata {
            name: "../oa".into(),
            ..m()
        })
        .contains("metadata.name")
    );
    assert!(
        refuse(pb::UploadBuildMetadata {
            version: "".into(),
            ..m()
        })
        .contains("metadata.version")
    );
    assert!(
        refuse(pb::UploadBuildMetadata {
            sha256: "ABC".into(),
            ..m()
        })
        .contains("sha256")
    );
    assert!(refuse(pb::UploadBuildMetadata { size: 0, ..m() }).contains("empty"));
    let over = refuse(pb::UploadBuildMetadata {
        size: MAX_BYTES + 1,
        ..m()
    });
    assert!(over.contains("--max-build-bytes"), "{over}");
    let manifest = refuse(pb::UploadBuildMetadata {
        manifest: "[run]\ncommand = \"./s\"\n[nope]\n".into(),
        ..m()
    });
    assert!(manifest.starts_with("manifest: line 3:"), "{manifest}");

    // More bytes than announced: refused at the byte that overflows.
    let mut up = f
        .builds
        .begin(pb::UploadBuildMetadata { size: 10, ..m() })
        .unwrap();
    let e = up.write(data.clone()).await.unwrap_err();
    assert!(e.to_string().contains("more than the 10 bytes"), "{e}");
    drop(up);
    f.assert_nothing_stored();

    // A part over the limit.
    let mut up = f.builds.begin(m()).unwrap();
    let e = up.write(vec![0; MAX_UPLOAD_PART + 1]).await.unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    drop(up);

    // Fewer bytes than announced.
    let mut up = f.builds.begin(m()).unwrap();
    up.write(data[..100].to_vec()).await.unwrap();
    let e = f.builds.finish(up, "t", &[]).await.unwrap_err();
    assert!(e.to_string().contains("after 100 of the 3000 bytes"), "{e}");
    f.assert_nothing_stored();

    // Bytes that do not hash as announced.
    let mut wrong = data.clone();
    wrong[5] ^= 1;
    let e = send(&f.builds, m(), &wrong).await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(ref s) if s.contains("SHA-256")),
        "{e:?}"
    );
    f.assert_nothing_stored();

    // An archive the rules refuse: the reason is the archive module's sentence.
    let bad = [b"BAD".as_slice(), &data].concat();
    let e = send(&f.builds, metadata("oa", "1", &bad), &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(ref s) if s.contains("../evil") && s.contains("outside")),
        "{e:?}"
    );
    f.assert_nothing_stored();

    // A manifest inside the archive that does not parse.
    let bad = b"MANIFEST\n[run]\ncommand = 5\n\0rest".to_vec();
    let e = send(&f.builds, metadata("oa", "1", &bad), &bad)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("manifest: line 2:"), "{e}");
    f.assert_nothing_stored();
    assert_eq!(f.blob_count(), 0, "no chunk of a refused upload is kept");

    // An upload cut half way (the client went away): its file goes with it.
    let mut up = f.builds.begin(m()).unwrap();
    up.write(data[..1000].to_vec()).await.unwrap();
    assert_eq!(f.uploads_left().len(), 1);
    drop(up);
    f.assert_nothing_stored();

    // name@version taken.
    send(&f.builds, m(), &data).await.unwrap();
    let e = f.builds.begin(m()).err().unwrap();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
    // And the race where both began before either finished: the second loses at finish.
    let other = noise(2, 3000);
    let mut up = f.builds.begin(metadata("oa", "2", &other)).unwrap();
    up.write(other.clone()).await.unwrap();
    send(&f.builds, metadata("oa", "2", &other), &other)
        .await
        .unwrap();
    let e = f.builds.finish(up, "t", &[]).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
    assert!(f.uploads_left().is_empty());
}

#[tokio::test]
async fn a_manifest_given_beside_the_archive_wins_over_the_one_inside() {
    let f = fixture().await;
    let inside = b"MANIFEST\n[run]\ncommand = \"./inside {port}\"\n\0".to_vec();
    let r = send(&f.builds, metadata("oa", "1", &inside), &inside)
        .await
        .unwrap();
    let b = r.build.unwrap();
    assert_eq!(b.command, "./inside {port}");
    assert_eq!(b.ports.len(), 1, "one game port by default");

    let given = "[run]\ncommand = \"./given --port {port:game} --query {port:query}\"\n[[ports]]\nname = \"game\"\nprotocol = \"udp\"\n[[ports]]\nname = \"query\"\nprotocol = \"tcp\"\n";
    let r = send(
        &f.builds,
        pb::UploadBuildMetadata {
            manifest: given.into(),
            ..metadata("oa", "2", &inside)
        },
        &inside,
    )
    .await
    .unwrap();
    let b = r.build.unwrap();
    assert_eq!(b.manifest, given);
    assert!(b.command.starts_with("./given"), "{}", b.command);
    let ports: Vec<(String, i32)> = b
        .ports
        .iter()
        .map(|p| (p.name.clone(), p.protocol))
        .collect();
    assert_eq!(
        ports,
        [
            ("game".to_owned(), pb::Protocol::Udp as i32),
            ("query".to_owned(), pb::Protocol::Tcp as i32)
        ]
    );
    let list = f.builds.chunk_list(&b.id).await.unwrap();
    assert_eq!(list.manifest, given);
}

#[tokio::test]
async fn delete_is_refused_while_used_and_frees_only_unshared_chunks() {
    let f = fixture().await;
    let a = noise(3, 6 * 1024 * 1024);
    let mut b = a.clone();
    b.extend(noise(4, 3 * 1024 * 1024));
    let ra = send(&f.builds, metadata("oa", "1", &a), &a).await.unwrap();
    let rb = send(&f.builds, metadata("oa", "2", &b), &b).await.unwrap();
    assert!(
        rb.new_chunks < rb.build.as_ref().unwrap().chunk_count,
        "b shares a's chunks"
    );

    // Activated: refused, naming where.
    f.builds
        .activate("oa@1", Labels::new(), "op")
        .await
        .unwrap();
    let e = f.builds.delete("oa@1").await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(ref m) if m.contains("active version") && m.contains("every spawner")),
        "{e:?}"
    );

    // Run by an instance: refused, naming one.
    f.registry.apply_status(
        "spw-1",
        pb::InstanceStatus {
            id: "inst-1".into(),
            state: pb::InstanceState::Running as i32,
            build_version: "2".into(),
            build_name: "oa".into(),
            ..Default::default()
        },
    );
    assert_eq!(f.registry.get_build("oa@2").unwrap().instance_count, 1);
    let e = f.builds.delete("oa@2").await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(ref m) if m.contains("inst-1")),
        "{e:?}"
    );
    f.registry.forget_instance("inst-1");
    assert_eq!(f.registry.get_build("oa@2").unwrap().instance_count, 0);

    // Deleting b frees only what a does not share.
    let blobs_before = f.blob_count();
    let d = f.builds.delete("oa@2").await.unwrap();
    assert_eq!(d.freed_chunks, rb.new_chunks);
    assert_eq!(d.freed_bytes, rb.new_bytes);
    assert_eq!(f.blob_count(), blobs_before - rb.new_chunks as usize);
    assert!(matches!(
        f.registry.get_build("oa@2"),
        Err(Error::NotFound(_))
    ));
    // a is whole still.
    let list = f.builds.chunk_list(&ra.build.unwrap().id).await.unwrap();
    for c in list.chunks {
        f.builds.read_chunk(c.sha256).await.unwrap();
    }
    let gone = f.builds.delete("oa@2").await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
}

#[tokio::test]
async fn start_up_removes_what_a_crash_left_behind() {
    let f = fixture().await;
    let data = noise(5, 2 * 1024 * 1024);
    send(&f.builds, metadata("oa", "1", &data), &data)
        .await
        .unwrap();
    let kept = f.blob_count();
    // A blob no row names (chunks stored, then a crash before the rows), a half-written
    // blob and an upload's file.
    let blobs = BlobStore::open(f.dir.path().join("blobs")).unwrap();
    let stray = noise(6, 1000);
    blobs.put(&blobs::sha256_hex(&stray), &stray).unwrap();
    std::fs::write(f.dir.path().join("uploads").join("upl-x.part"), b"half").unwrap();
    assert_eq!(f.blob_count(), kept + 1);
    let Fixture {
        dir,
        store,
        registry,
        builds,
    } = f;
    drop((store, registry, builds));
    let f = fixture_in(dir).await;
    assert_eq!(f.blob_count(), kept);
    assert!(f.uploads_left().is_empty());
    assert_eq!(
        f.registry.list_builds("").len(),
        1,
        "the build itself is loaded"
    );
}

#[tokio::test]
async fn fetches_are_checked_and_a_damaged_blob_is_an_internal_error() {
    let f = fixture().await;
    let data = noise(8, 100_000);
    let b = send(&f.builds, metadata("oa", "1", &data), &data)
        .await
        .unwrap()
        .build
        .unwrap();
    let list = f.builds.chunk_list(&b.id).await.unwrap();
    let sha = list.chunks[0].sha256.clone();
    f.builds
        .check_fetch(std::slice::from_ref(&sha))
        .await
        .unwrap();
    assert!(matches!(
        f.builds.check_fetch(&["../../x".into()]).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.builds.check_fetch(&["0".repeat(64)]).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.builds
            .check_fetch(&vec![sha.clone(); MAX_FETCH_CHUNKS + 1])
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.builds.chunk_list("bld-nope").await,
        Err(Error::NotFound(_))
    ));
    std::fs::write(
        f.dir.path().join("blobs").join(&sha[..2]).join(&sha),
        b"rot",
    )
    .unwrap();
    let e = f.builds.read_chunk(sha.clone()).await.unwrap_err();
    assert!(
        matches!(e, Error::Internal(ref m) if m.contains(&sha)),
        "{e:?}"
    );
}

#[tokio::test]
async fn activation_history_remembers_the_version_before() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for v in ["1", "2", "3"] {
        let data = noise(v.len() as u64 + ids.len() as u64 * 10, 1000);
        ids.push(
            send(&f.builds, metadata("oa", v, &data), &data)
                .await
                .unwrap()
                .build
                .unwrap()
                .id,
        );
    }
    let eu: Labels = [("region".to_owned(), "eu".to_owned())].into();
    f.builds.activate("oa@1", eu.clone(), "op").await.unwrap();
    f.builds.activate("oa@2", eu.clone(), "op").await.unwrap();
    f.builds
        .activate("oa@3", Labels::new(), "op")
        .await
        .unwrap();
    assert_eq!(
        f.store
            .previous_activation("oa", &eu, &ids[1])
            .await
            .unwrap(),
        Some(ids[0].clone())
    );
    assert_eq!(
        f.store
            .previous_activation("oa", &Labels::new(), &ids[2])
            .await
            .unwrap(),
        None
    );
    // Activations survive a restart and still pick versions per selector.
    let b = f.registry.get_build("oa@2").unwrap();
    assert_eq!(b.activations.len(), 1);
    assert_eq!(
        b.activations[0].selector.get("region").map(String::as_str),
        Some("eu")
    );
    assert!(f.registry.get_build("oa@1").unwrap().activations.is_empty());
    let Fixture {
        dir,
        store,
        registry,
        builds,
    } = f;
    drop((store, registry, builds));
    let f = fixture_in(dir).await;
    assert_eq!(f.registry.get_build("oa@2").unwrap().activations.len(), 1);
    assert_eq!(f.registry.get_build("oa@3").unwrap().activations.len(), 1);
}

#[tokio::test]
async fn spawners_are_told_the_builds_to_hold_and_report_what_they_hold() {
    let f = fixture().await;
    let info = crate::model::SpawnerInfo {
        id: "spw-1".into(),
        name: "one".into(),
        region: String::new(),
        host: "h".into(),
        advertised_address: "127.0.0.1".into(),
        capacity: 4,
        labels: Labels::new(),
        agent_version: String::new(),
        active_build: "demo-1".into(),
        drained: false,
        enrolled_at: 0,
        last_seen_at: 0,
    };
    f.registry.enrolled(info);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let data = noise(9, 1000);
    let b = send(&f.builds, metadata("oa", "1", &data), &data)
        .await
        .unwrap()
        .build
        .unwrap();
    let held = pb::HeldBuild {
        name: "oa".into(),
        version: "1".into(),
        sha256: b.sha256.clone(),
        ..Default::default()
    };
    let hello = pb::Hello {
        region: "eu".into(),
        capacity: 4,
        builds: vec![held],
        ..Default::default()
    };
    let link = f.registry.attach("spw-1", &hello, tx).unwrap();
    assert_eq!(f.registry.get_build("oa@1").unwrap().spawner_count, 1);
    let (spawner, _) = f.registry.get_spawner("spw-1").unwrap();
    assert_eq!(spawner.builds.len(), 1);

    // An activation elsewhere tells it nothing to hold; one for its region names the build.
    let wanted = |rx: &mut tokio::sync::mpsc::Receiver<pb::MasterMessage>| match rx.try_recv() {
        Ok(pb::MasterMessage {
            kind: Some(pb::master_message::Kind::Config(c)),
        }) => c.wanted_builds.unwrap().builds,
        other => panic!("{other:?}"),
    };
    f.builds
        .activate(
            "oa@1",
            [("region".to_owned(), "us".to_owned())].into(),
            "op",
        )
        .await
        .unwrap();
    assert!(wanted(&mut rx).is_empty());
    f.builds
        .activate(
            "oa@1",
            [("region".to_owned(), "eu".to_owned())].into(),
            "op",
        )
        .await
        .unwrap();
    let w = wanted(&mut rx);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].id.as_str(), w[0].sha256.as_str()),
        (b.id.as_str(), b.sha256.as_str())
    );
    f.registry.push_wanted_builds("spw-1").unwrap();
    assert_eq!(wanted(&mut rx).len(), 1);

    // It drops the build: counted no more; a report from an older link is ignored.
    f.registry.builds_held("spw-1", link.generation + 1, vec![]);
    assert_eq!(f.registry.get_build("oa@1").unwrap().spawner_count, 1);
    f.registry.builds_held("spw-1", link.generation, vec![]);
    assert_eq!(f.registry.get_build("oa@1").unwrap().spawner_count, 0);

    // A spawn naming only the build name runs the version active for this spawner.
    let rec = crate::model::InstanceRecord {
        id: "inst-1".into(),
        spawner_id: String::new(),
        state: pb::InstanceState::Starting,
        build_version: String::new(),
        build_name: String::new(),
        spawn: Default::default(),
        ports: vec![],
        pid: 0,
        restart_count: 0,
        labels: Labels::new(),
        players: 0,
        max_players: 0,
        resources: pb::Resources::default(),
        created_at: 0,
        started_at: 0,
        state_changed_at: 0,
        exit_code: None,
        message: String::new(),
        revision: 0,
    };
    let placement = crate::registry::Placement::default();
    let (r, _, build) = f
        .registry
        .reserve(&placement, &BuildChoice::Active("oa".into()), rec.clone())
        .unwrap();
    assert_eq!(build.unwrap().id, b.id);
    assert_eq!(
        (r.build_name.as_str(), r.build_version.as_str()),
        ("oa", "1")
    );
    assert_eq!(f.registry.get_instance("inst-1").unwrap().build_name, "oa");
    assert_eq!(f.registry.get_build("oa@1").unwrap().instance_count, 1);
    // An unknown name reserves nothing.
    let e = f
        .registry
        .reserve(
            &placement,
            &BuildChoice::Active("quake".into()),
            crate::model::InstanceRecord {
                id: "inst-2".into(),
                ..rec
            },
        )
        .err()
        .unwrap();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    assert!(f.registry.get_instance("inst-2").is_err());
}

#[tokio::test]
async fn an_instance_keeps_its_build_name_across_a_restart() {
    let f = fixture().await;
    let rec = crate::model::InstanceRecord {
        id: "inst-9".into(),
        spawner_id: "spw-1".into(),
        state: pb::InstanceState::Running,
        build_version: "1".into(),
        build_name: "oa".into(),
        spawn: Default::default(),
        ports: vec![],
        pid: 1,
        restart_count: 0,
        labels: Labels::new(),
        players: 0,
        max_players: 0,
        resources: pb::Resources::default(),
        created_at: 1,
        started_at: 1,
        state_changed_at: 1,
        exit_code: None,
        message: String::new(),
        revision: 0,
    };
    f.store.upsert_instance(&rec).await.unwrap();
    let loaded = f.store.list_instances().await.unwrap();
    assert_eq!(loaded[0].build_name, "oa");
}

#[tokio::test(start_paused = true)]
async fn idle_upload_sessions_are_dropped_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::default();
    let data = noise(1, 10);
    let announced = Announced::check(metadata("oa", "1", &data), 1 << 20).unwrap();
    let up = Upload::create(dir.path(), announced.clone()).unwrap();
    let id = sessions.insert("alice".into(), up);
    assert!(matches!(
        sessions.get(&id, "mallory").await,
        Err(Error::NotFound(_))
    ));
    let s = sessions.get(&id, "alice").await.unwrap();
    drop(s);
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files(), 1);
    tokio::time::advance(upload::SESSION_IDLE - Duration::from_secs(1)).await;
    assert_eq!(sessions.reap(upload::SESSION_IDLE), 0);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(sessions.reap(upload::SESSION_IDLE), 1);
    assert!(sessions.is_empty());
    assert_eq!(files(), 0, "the dropped upload's file is gone");
    assert!(matches!(
        sessions.get(&id, "alice").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn instance_count_changes_are_announced_once_per_build_not_per_change() {
    let f = fixture().await;
    let data = noise(11, 1000);
    let b = send(&f.builds, metadata("oa", "1", &data), &data)
        .await
        .unwrap()
        .build
        .unwrap();
    let (_, mut rx) = f.registry.subscribe();
    let status = |id: &str, state: pb::InstanceState| pb::InstanceStatus {
        id: id.into(),
        state: state as i32,
        build_version: "1".into(),
        build_name: "oa".into(),
        ..Default::default()
    };
    for i in 0..5 {
        f.registry.apply_status(
            "spw-1",
            status(&format!("inst-{i}"), pb::InstanceState::Starting),
        );
        f.registry.apply_status(
            "spw-1",
            status(&format!("inst-{i}"), pb::InstanceState::Running),
        );
    }
    f.registry.flush_build_updates();
    f.registry.flush_build_updates();
    let mut updates = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Some(pb::watch_event::Kind::BuildUpdated(u)) = &ev.kind {
            updates.push(u.clone());
        }
    }
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(
        (updates[0].id.as_str(), updates[0].instance_count),
        (b.id.as_str(), 5)
    );
    // A status change of an instance does not touch its build.
    f.registry
        .apply_status("spw-1", status("inst-0", pb::InstanceState::Ready));
    f.registry.flush_build_updates();
    assert!(
        std::iter::from_fn(|| rx.try_recv().ok())
            .all(|ev| !matches!(ev.kind, Some(pb::watch_event::Kind::BuildUpdated(_))))
    );
}
