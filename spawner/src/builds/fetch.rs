//! The master's side of an install: a build's chunk list and the chunks it lacks, asked for
//! with the spawner's credential like the link. A cut stream is resumed by asking again for
//! what is still missing; every chunk is checked against its SHA-256 before it enters the
//! cache. Checking and writing run beside the stream (a few chunks at a time), so the
//! connection keeps moving while a chunk is hashed.
//!
//! Cached chunks are not flushed one by one: a chunk torn by a host crash fails its check
//! when an install next reads it, and is fetched again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exile_api::v1::{self, spawner_link_client::SpawnerLinkClient};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::error::BuildError;
use super::layout::{ChunkMeta, Layout, write_file};
use crate::backoff::Backoff;
use crate::enroll::Credential;
use exile_api::build::MAX_FETCH_CHUNKS;

/// Largest chunk the master sends (link.proto); bigger ones in a chunk list are refused.
pub const MAX_CHUNK_BYTES: u64 = exile_api::build::MAX_CHUNK_BYTES as u64;
/// Largest HTTP/2 frame the master may send on the chunk connection (h2 allows up to 16 MiB).
const BULK_FRAME: u32 = 1 << 20;
/// HTTP/2 flow-control window of a chunk stream: a few chunks in flight.
const BULK_WINDOW: u32 = 8 << 20;
/// Consecutive attempts that bring nothing new before an install gives up on the master.
const MAX_IDLE_ATTEMPTS: u32 = 6;
/// How long a FetchChunks stream may stay silent before it counts as cut.
const STALL: Duration = Duration::from_secs(60);
/// Chunks being checked and written while the stream goes on (memory: this many chunks plus
/// the one being received).
const STORES_IN_FLIGHT: usize = 3;

/// A client of the master's build RPCs.
#[derive(Clone)]
pub struct Master {
    client: SpawnerLinkClient<Channel>,
    bearer: AsciiMetadataValue,
}

impl Master {
    /// A client over `endpoint` (connected on first use, reconnected as needed).
    pub fn new(endpoint: &Endpoint, credential: &Credential) -> Result<Self, BuildError> {
        let bearer =
            MetadataValue::try_from(format!("Bearer {}", credential.credential)).map_err(|_| {
                BuildError::Unavailable(
                    "the stored credential holds characters not allowed in metadata".into(),
                )
            })?;
        // A connection of its own, tuned for bulk: h2's defaults (16 KiB frames, small
        // windows) cut a 1 MiB chunk into 64 frames and stall the sender on window updates.
        let bulk = endpoint
            .clone()
            .max_frame_size(BULK_FRAME)
            .initial_stream_window_size(BULK_WINDOW)
            .initial_connection_window_size(BULK_WINDOW * 2);
        Ok(Self {
            client: SpawnerLinkClient::new(bulk.connect_lazy()),
            bearer,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// The chunk list of build `id`, retrying while the master is unreachable.
    pub async fn chunk_list(
        &self,
        id: &str,
        spec: &str,
    ) -> Result<v1::GetBuildChunksResponse, BuildError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 1;
        loop {
            let request = self.request(v1::GetBuildChunksRequest {
                build_id: id.to_owned(),
            });
            let status = match self.client.clone().get_build_chunks(request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            match status.code() {
                Code::NotFound => {
                    return Err(BuildError::NotFound(format!(
                        "the master does not hold build {spec} (id {id}): {}",
                        status.message()
                    )));
                }
                code if is_transient(code) && attempt < MAX_IDLE_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                _ => {
                    return Err(BuildError::Unavailable(format!(
                        "could not get the chunk list of build {spec} from the master ({:?}: {})",
                        status.code(),
                        status.message()
                    )));
                }
            }
        }
    }

    async fn fetch_chunks(
        &self,
        hashes: Vec<String>,
    ) -> Result<tonic::Streaming<v1::ChunkData>, tonic::Status> {
        let request = self.request(v1::FetchChunksRequest { sha256: hashes });
        Ok(self
            .client
            .clone()
            .fetch_chunks(request)
            .await?
            .into_inner())
    }
}

/// Codes worth another attempt: the master or the network, not the request.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Cancelled
    )
}

/// How one FetchChunks stream ended.
enum Attempt {
    /// Every chunk asked for arrived (some perhaps corrupted).
    Complete,
    /// The stream broke off; worth asking again for the rest.
    Cut(String),
    /// Asking again cannot help.
    Fatal(BuildError),
}

/// Fetches the chunks of one install, counting the bytes the master sent.
pub struct Fetcher<'a> {
    master: &'a Master,
    layout: &'a Layout,
    spec: &'a str,
    total: &'a AtomicU64,
    /// Bytes received in this install.
    pub fetched: u64,
    mismatches: HashMap<String, u32>,
    /// Chunks checked against their hash as they arrived and stored since the last
    /// [`Fetcher::take_fresh`].
    fresh: HashSet<String>,
}

impl<'a> Fetcher<'a> {
    /// A fetcher for build `spec`, adding every byte received to `total` too.
    pub fn new(
        master: &'a Master,
        layout: &'a Layout,
        spec: &'a str,
        total: &'a AtomicU64,
    ) -> Self {
        Self {
            master,
            layout,
            spec,
            total,
            fetched: 0,
            mismatches: HashMap::new(),
            fresh: HashSet::new(),
        }
    }

    /// The chunks stored (and checked) since the last call.
    pub fn take_fresh(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.fresh)
    }

    /// Brings every chunk of `missing` into the cache, in batches, resuming cut streams with
    /// backoff; gives up after [`MAX_IDLE_ATTEMPTS`] attempts in a row that brought nothing,
    /// or when a chunk arrives corrupted a second time.
    pub async fn fetch(&mut self, missing: &[ChunkMeta]) -> Result<(), BuildError> {
        let mut seen = HashSet::new();
        let mut pending: Vec<ChunkMeta> = missing
            .iter()
            .filter(|c| seen.insert(c.sha256.clone()))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut idle = 0;
        while !pending.is_empty() {
            let end = pending.len().min(MAX_FETCH_CHUNKS);
            let (stored, outcome) = self.attempt(&pending[..end]).await;
            pending.retain(|c| !stored.contains(&c.sha256));
            if stored.is_empty() {
                idle += 1;
            } else {
                idle = 0;
                backoff.reset();
            }
            self.fresh.extend(stored);
            match outcome {
                Attempt::Complete => {}
                Attempt::Fatal(e) => return Err(e),
                Attempt::Cut(reason) => {
                    if idle >= MAX_IDLE_ATTEMPTS {
                        return Err(BuildError::Unavailable(format!(
                            "could not fetch build {} from the master: {reason} ({idle} attempts in a row brought nothing; {} chunks still missing)",
                            self.spec,
                            pending.len()
                        )));
                    }
                    let delay = backoff.next_delay();
                    tracing::info!(build = %self.spec, %reason, ?delay, missing = pending.len(), "chunk stream cut, resuming");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    /// One FetchChunks stream for `batch`; returns the chunks it stored.
    async fn attempt(&mut self, batch: &[ChunkMeta]) -> (HashSet<String>, Attempt) {
        let mut stored = HashSet::new();
        let mut stores = Stores::default();
        let outcome = self.receive(batch, &mut stored, &mut stores).await;
        // Chunks already received are kept whatever ended the stream.
        while let Some(done) = stores.next().await {
            if let Err(fatal) = self.stored(done, &mut stored)
                && matches!(outcome, Attempt::Complete | Attempt::Cut(_))
            {
                return (stored, fatal);
            }
        }
        (stored, outcome)
    }

    /// Reads the stream, handing each chunk to a store task.
    async fn receive(
        &mut self,
        batch: &[ChunkMeta],
        stored: &mut HashSet<String>,
        stores: &mut Stores,
    ) -> Attempt {
        let mut received = HashSet::new();
        let sizes: HashMap<&str, u64> = batch.iter().map(|c| (c.sha256.as_str(), c.size)).collect();
        let hashes = batch.iter().map(|c| c.sha256.clone()).collect();
        let mut stream = match self.master.fetch_chunks(hashes).await {
            Ok(stream) => stream,
            Err(status) => return self.classify(&status),
        };
        loop {
            while stores.len() >= STORES_IN_FLIGHT {
                if let Some(done) = stores.next().await
                    && let Err(fatal) = self.stored(done, stored)
                {
                    return fatal;
                }
            }
            let next = match tokio::time::timeout(STALL, stream.message()).await {
                Ok(next) => next,
                Err(_) => {
                    return Attempt::Cut(format!("no chunk arrived for {} s", STALL.as_secs()));
                }
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) if received.len() == batch.len() => return Attempt::Complete,
                Ok(None) => {
                    return Attempt::Cut(format!(
                        "the master ended the stream after {} of {} chunks",
                        received.len(),
                        batch.len()
                    ));
                }
                Err(status) => return self.classify(&status),
            };
            let len = chunk.data.len() as u64;
            self.fetched += len;
            self.total.fetch_add(len, Ordering::Relaxed);
            let Some(&size) = sizes.get(chunk.sha256.as_str()) else {
                tracing::warn!(build = %self.spec, chunk = %chunk.sha256, "the master sent a chunk that was not asked for; ignored");
                continue;
            };
            if !received.insert(chunk.sha256.clone()) {
                continue;
            }
            let path = self.layout.chunk(&chunk.sha256);
            let tmp = self.layout.tmp_path("chunk");
            stores.push(tokio::task::spawn_blocking(move || {
                let sound = store(&chunk, size, &tmp, &path);
                (chunk.sha256, sound)
            }));
        }
    }

    /// Takes in the outcome of one store task; an error is the attempt's fatal end.
    fn stored(
        &mut self,
        done: Result<(String, Result<bool, BuildError>), tokio::task::JoinError>,
        stored: &mut HashSet<String>,
    ) -> Result<(), Attempt> {
        let (sha, sound) = done.map_err(|e| {
            Attempt::Fatal(BuildError::Internal(format!(
                "the chunk writer failed: {e}"
            )))
        })?;
        match sound {
            Ok(true) => {
                stored.insert(sha);
                Ok(())
            }
            Ok(false) => {
                let count = self.mismatches.entry(sha.clone()).or_default();
                *count += 1;
                if *count >= 2 {
                    return Err(Attempt::Fatal(BuildError::Corrupt(format!(
                        "chunk {sha} of build {} arrived corrupted twice (its bytes do not match its SHA-256 or size)",
                        self.spec
                    ))));
                }
                tracing::warn!(build = %self.spec, chunk = %sha, "a chunk arrived corrupted; asking for it again");
                Ok(())
            }
            Err(e) => Err(Attempt::Fatal(e)),
        }
    }

    fn classify(&self, status: &tonic::Status) -> Attempt {
        let spec = self.spec;
        match status.code() {
            Code::NotFound => Attempt::Fatal(BuildError::NotFound(format!(
                "the master no longer holds every chunk of build {spec}: {}",
                status.message()
            ))),
            code if is_transient(code) => Attempt::Cut(format!("{code:?}: {}", status.message())),
            code => Attempt::Fatal(BuildError::Unavailable(format!(
                "the master refused to send the chunks of build {spec} ({code:?}: {})",
                status.message()
            ))),
        }
    }
}

/// Store tasks in flight, in completion order.
type Stores =
    futures::stream::FuturesUnordered<tokio::task::JoinHandle<(String, Result<bool, BuildError>)>>;

/// Checks a chunk against its hash and size and moves it into the cache; false when it does
/// not match. Not flushed (see the module's note).
fn store(chunk: &v1::ChunkData, size: u64, tmp: &Path, path: &Path) -> Result<bool, BuildError> {
    if chunk.data.len() as u64 != size || sha256_hex(&chunk.data) != chunk.sha256 {
        return Ok(false);
    }
    write_file(tmp, path, &chunk.data)?;
    Ok(true)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
