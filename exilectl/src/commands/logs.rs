//! `logs` and `console`: an instance's output log (or a spawner's own log), and an instance's
//! console (stdin) driven line by line.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use exile_api::v1::stream_logs_request::Source;
use exile_api::v1::{self as pb, SendConsoleCommandRequest, StreamLogsRequest};
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;

use super::Ctx;
use crate::cli::{ConsoleArgs, LogsArgs};
use crate::client::RpcResult;
use crate::output::OutputCleaner;

/// How long `console` keeps showing output after its input ended, so the answer to the last
/// line is seen.
const LINGER: Duration = Duration::from_secs(1);

/// Writes chunks of output to stdout as they come, neutralised unless raw bytes were asked
/// for; notes skipped output on stderr.
struct Show {
    cleaner: Option<OutputCleaner>,
}

impl Show {
    fn new(raw: bool) -> Self {
        Self {
            cleaner: (!raw).then(OutputCleaner::default),
        }
    }

    fn chunk(&mut self, chunk: &pb::LogChunk) -> Result<()> {
        if chunk.skipped_bytes > 0 {
            eprintln!("[… {} bytes of output skipped …]", chunk.skipped_bytes);
        }
        match &mut self.cleaner {
            Some(c) => write(c.feed(&chunk.data).as_bytes()),
            None => write(&chunk.data),
        }
    }

    fn finish(&mut self) -> Result<()> {
        match &mut self.cleaner {
            Some(c) => write(c.finish().as_bytes()),
            None => Ok(()),
        }
    }
}

fn write(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let source = match (args.instance, args.spawner) {
        (Some(instance), None) => Source::Id(instance),
        (None, Some(spawner)) => Source::SpawnerId(spawner),
        (Some(_), Some(_)) => {
            bail!("give an instance or --spawner <spawner-id>, not both")
        }
        (None, None) => {
            bail!("name the instance whose log to print, or a spawner with --spawner <spawner-id>")
        }
    };
    let tail = args.tail.unwrap_or(if args.follow { 10 } else { 100 });
    let mut stream = ctx
        .session
        .instances()
        .stream_logs(StreamLogsRequest {
            source: Some(source),
            follow: args.follow,
            tail_lines: tail,
        })
        .await
        .or_explain(&ctx.session)?;
    let mut show = Show::new(args.raw);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| ctx.session.error(&s))?;
        show.chunk(&chunk)?;
    }
    show.finish()
}

pub async fn console(ctx: &Ctx, args: ConsoleArgs) -> Result<()> {
    let id = args.instance;
    let mut stream = ctx
        .session
        .instances()
        .stream_logs(StreamLogsRequest {
            source: Some(Source::Id(id.clone())),
            follow: true,
            tail_lines: args.tail,
        })
        .await
        .or_explain(&ctx.session)?;
    let session = ctx.session.clone();
    let output = tokio::spawn(async move {
        let mut show = Show::new(false);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => show.chunk(&chunk)?,
                Err(s) => return Err(session.error(&s)),
            }
        }
        show.finish()
    });
    let mut client = ctx.session.instances();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        client
            .send_console_command(SendConsoleCommandRequest {
                id: id.clone(),
                line: line.to_owned(),
            })
            .await
            .or_explain(&ctx.session)?;
    }
    match tokio::time::timeout(LINGER, output).await {
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => bail!("the log stream failed: {e}"),
        _ => Ok(()),
    }
}
