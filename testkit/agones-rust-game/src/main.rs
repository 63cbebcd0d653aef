//! An Agones game server on the official Rust SDK, unchanged from how it runs under Agones.
//! It goes one step further each time the test drops a `go-N` file in its directory, and
//! writes what it saw to files there.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;

async fn go(step: u32) {
    let file = format!("go-{step}");
    while !Path::new(&file).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append(file: &str, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("open");
    writeln!(f, "{line}").expect("write");
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        append("errors.log", &format!("{e:?}"));
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut sdk = agones::Sdk::new(None, None).await?;
    let mut watch = sdk.watch_gameserver().await?;
    tokio::spawn(async move {
        while let Some(Ok(gs)) = watch.next().await {
            let state = gs.status.map(|s| s.state).unwrap_or_default();
            let map = gs
                .object_meta
                .and_then(|m| m.labels.get("agones.dev/sdk-map").cloned())
                .unwrap_or_default();
            append(
                "watch.log",
                &format!("{{\"state\":\"{state}\",\"map\":\"{map}\"}}"),
            );
        }
    });
    sdk.ready().await?;
    go(1).await;
    sdk.set_label("map", "dust").await?;
    go(2).await;
    let health = sdk.health_check();
    tokio::spawn(async move {
        while health.send(()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    sdk.allocate().await?;
    go(3).await;
    sdk.reserve(Duration::from_secs(30)).await?;
    go(4).await;
    let gs = sdk.get_gameserver().await?;
    let state = gs.status.map(|s| s.state).unwrap_or_default();
    let name = gs.object_meta.map(|m| m.name).unwrap_or_default();
    std::fs::write(
        "gameserver.json",
        format!("{{\"name\":\"{name}\",\"state\":\"{state}\"}}"),
    )?;
    let code = match sdk.beta().clone().get_counter_count("rooms").await {
        Ok(_) => "OK".to_owned(),
        Err(agones::errors::Error::Rpc(status)) => format!("{}", status.code() as i32),
        Err(e) => format!("{e}"),
    };
    std::fs::write("beta.code", code)?;
    go(5).await;
    sdk.shutdown().await?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}
