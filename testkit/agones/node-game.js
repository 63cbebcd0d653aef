// An Agones game server written against the official Node.js SDK
// (@google-cloud/agones-sdk), unchanged from how it runs under Agones. It goes one step
// further each time the test drops a `go-N` file in its directory, and writes what its
// WatchGameServer saw to watch.log.
const fs = require('fs');
const AgonesSDK = require('@google-cloud/agones-sdk');

const go = (n) => new Promise((resolve) => {
  const poll = () => (fs.existsSync(`go-${n}`) ? resolve() : setTimeout(poll, 50));
  poll();
});

async function main() {
  const sdk = new AgonesSDK();
  await sdk.connect();
  // Ready only once the watch is open, so it sees every state from the first.
  let watching;
  const opened = new Promise((resolve) => { watching = resolve; });
  sdk.watchGameServer((gs) => {
    const labels = Object.fromEntries(gs.objectMeta.labelsMap);
    fs.appendFileSync('watch.log', JSON.stringify({ state: gs.status.state, labels }) + '\n');
    watching();
  }, (err) => fs.appendFileSync('errors.log', `watch: ${err}\n`));
  await opened;
  await sdk.ready();
  await go(1);
  await sdk.setLabel('map', 'dust');
  await go(2);
  sdk.health((err) => fs.appendFileSync('errors.log', `health: ${err}\n`));
  setInterval(() => sdk.health(() => {}), 500);
  await sdk.allocate();
  await go(3);
  await sdk.reserve(30);
  await go(4);
  const gs = await sdk.getGameServer();
  fs.writeFileSync('gameserver.json', JSON.stringify(gs));
  // Counters and lists from the manifest: `rooms` (1 of 10), `players` (["bot"], capacity 3).
  const log = [];
  log.push(`start ${await sdk.beta.getCounterCount('rooms')}`);
  await sdk.beta.incrementCounter('rooms', 2);
  log.push(`moved ${await sdk.beta.getCounterCount('rooms')}`);
  try {
    await sdk.beta.incrementCounter('rooms', 100);
    log.push('past capacity OK');
  } catch (err) {
    log.push(`past capacity ${err.code}`);
  }
  await sdk.beta.appendListValue('players', 'n1');
  log.push(`list ${JSON.stringify(await sdk.beta.getListValues('players'))}`);
  fs.writeFileSync('counts.log', log.join('\n') + '\n');
  fs.writeFileSync('counts.done', '');
  await go(5);
  await sdk.shutdown();
}

main().catch((err) => {
  fs.appendFileSync('errors.log', `${err.stack || err}\n`);
  process.exit(2);
});
