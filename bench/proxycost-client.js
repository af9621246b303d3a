// bench/proxycost.py's client: fetches every URL of a list as npm does (HTTP/1.1 keep-alive,
// 15 sockets: npm's maxsockets), and writes how long it took.
const https = require('https');
const fs = require('fs');
const urls = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean);
const agent = new https.Agent({keepAlive: true, maxSockets: 15});
let next = 0, bytes = 0, first = null;
const started = process.hrtime.bigint();
function one() {
  if (next >= urls.length) return Promise.resolve();
  const url = urls[next++];
  return new Promise((resolve, reject) => {
    https.get(url, {agent, headers: {'user-agent': 'npm/11 node/v20 proxycost', accept: '*/*'}}, res => {
      if (res.statusCode !== 200) reject(new Error(url + ': ' + res.statusCode));
      res.on('data', chunk => { bytes += chunk.length; });
      res.on('end', () => { if (first === null) first = Number(process.hrtime.bigint() - started) / 1e9; resolve(); });
      res.on('error', reject);
    }).on('error', reject);
  }).then(one);
}
Promise.all(Array.from({length: 15}, one)).then(() => {
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  fs.writeFileSync(process.argv[3], JSON.stringify({requests: urls.length, bytes, elapsed, first}));
  agent.destroy();
}, error => { console.error(error.message); process.exit(1); });
