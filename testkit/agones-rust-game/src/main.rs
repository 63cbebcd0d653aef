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

/// The gRPC code of a failed call, or OK.
fn code<T>(result: agones::errors::Result<T>) -> String {
    match result {
        Ok(_) => "OK".to_owned(),
        Err(agones::errors::Error::Rpc(status)) => format!("{}", status.code() as i32),
        Err(e) => format!("{e}"),
    }
}

/// Counters and lists through the beta SDK, from the manifest's `rooms` (1 of 10) and
/// `players` (["bot"], capacity 3); what it saw goes to `counts.log`, then `counts.done`.
async fn counts(sdk: &mut agones::Sdk) -> Result<(), Box<dyn std::error::Error>> {
    let mut beta = sdk.beta().clone();
    let mut log = Vec::new();
    log.push(format!("start {}", beta.get_counter_count("rooms").await?));
    beta.increment_counter("rooms", 2).await?;
    beta.decrement_counter("rooms", 1).await?;
    log.push(format!("moved {}", beta.get_counter_count("rooms").await?));
    beta.set_counter_capacity("rooms", 5).await?;
    beta.set_counter_count("rooms", 5).await?;
    log.push(format!(
        "set {}/{}",
        beta.get_counter_count("rooms").await?,
        beta.get_counter_capacity("rooms").await?
    ));
    log.push(format!("past capacity {}", code(beta.increment_counter("rooms", 1).await)));
    log.push(format!("below zero {}", code(beta.decrement_counter("rooms", 6).await)));
    log.push(format!("unknown {}", code(beta.get_counter_count("nope").await)));
    beta.set_list_capacity("players", 4).await?;
    beta.append_list_value("players", "p1").await?;
    log.push(format!("again {}", code(beta.append_list_value("players", "p1").await)));
    beta.delete_list_value("players", "bot").await?;
    log.push(format!("gone {}", code(beta.delete_list_value("players", "bot").await)));
    log.push(format!(
        "list {}/{} p1={} bot={} {:?}",
        beta.get_list_length("players").await?,
        beta.get_list_capacity("players").await?,
        beta.list_contains("players", "p1").await?,
        beta.list_contains("players", "bot").await?,
        beta.get_list_values("players").await?,
    ));
    let status = sdk.get_gameserver().await?.status.unwrap_or_default();
    let rooms = status.counters.get("rooms").cloned().unwrap_or_default();
    let players = status.lists.get("players").cloned().unwrap_or_default();
    log.push(format!(
        "gameserver rooms {}/{} players {}/{:?}",
        rooms.count, rooms.capacity, players.capacity, players.values
    ));
    std::fs::write("counts.log", log.join("\n") + "\n")?;
    std::fs::write("counts.done", "")?;
    Ok(())
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
    counts(&mut sdk).await?;
    go(5).await;
    sdk.shutdown().await?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}
