// The official DingTalk Node SDK (@alicloud/dingtalk 2.2.27) as a contender
// in bench/run: recall every key of a keys file (one key per line) in
// batches of 20 with a pool of N calls in flight, then check that every key
// was recalled.
//
//   NODE_EXTRA_CA_CERTS=DIR/ca.pem node bench.js HOST:PORT KEYS CID ROBOT TOKEN [CONCURRENCY]
//
// The token is read from the environment variable BENCH_TOKEN when TOKEN is
// "-" so that it does not show in `ps`.  Prints one JSON line to stdout.
'use strict';

const fs = require('fs');
const Robot = require('@alicloud/dingtalk/robot_1_0');
const $OpenApi = require('@alicloud/openapi-client');
const $Util = require('@alicloud/tea-util');

const RobotClient = Robot.default;

function main() {
  const [endpoint, keysFile, cid, robot, tokenArg, concArg] = process.argv.slice(2);
  if (!endpoint || !keysFile || !cid || !robot || !tokenArg) {
    process.stderr.write('usage: node bench.js HOST:PORT KEYS CID ROBOT TOKEN|- [CONCURRENCY]\n');
    process.exit(2);
  }
  const token = tokenArg === '-' ? process.env.BENCH_TOKEN : tokenArg;
  const concurrency = Number(concArg || 8);
  const keys = fs.readFileSync(keysFile, 'utf8').split('\n').filter((k) => k !== '');

  const config = new $OpenApi.Config({});
  config.protocol = 'https';
  config.regionId = 'central';
  config.endpoint = endpoint; // "localhost:PORT": the SDK puts it in the Host header and the URL
  const client = new RobotClient(config);
  const runtime = new $Util.RuntimeOptions({});

  const batches = [];
  for (let i = 0; i < keys.length; i += 20) batches.push(keys.slice(i, i + 20));

  let next = 0;
  let requests = 0;
  let recalled = 0;
  const failed = [];
  const t0 = process.hrtime.bigint();

  async function worker() {
    while (next < batches.length) {
      const batch = batches[next++];
      const headers = new Robot.OrgGroupRecallHeaders({});
      headers.xAcsDingtalkAccessToken = token;
      const request = new Robot.OrgGroupRecallRequest({
        openConversationId: cid,
        robotCode: robot,
        processQueryKeys: batch,
      });
      requests++;
      const res = await client.orgGroupRecallWithOptions(request, headers, runtime);
      const body = res.body || {};
      recalled += (body.successResult || []).length;
      const f = body.failedResult || {};
      for (const k of Object.keys(f)) failed.push(k + '=' + f[k]);
    }
  }

  const pool = [];
  for (let i = 0; i < concurrency; i++) pool.push(worker());
  Promise.all(pool).then(() => {
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const out = { contender: 'node-sdk', keys: keys.length, recalled, failed: failed.length, requests, elapsed };
    process.stdout.write(JSON.stringify(out) + '\n');
    if (recalled !== keys.length || failed.length) {
      process.stderr.write('node-sdk: not every key was recalled: ' + failed.slice(0, 5).join(', ') + '\n');
      process.exit(1);
    }
  }, (err) => {
    process.stderr.write('node-sdk: ' + (err && (err.code || '') + ' ' + (err.message || err)) + '\n');
    process.exit(1);
  });
}

main();
