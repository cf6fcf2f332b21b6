// dkim_mailauth.js - verify DKIM signatures with mailauth (npm), offline.
//
// Usage: node dkim_mailauth.js NODE_DIR KEYS FILE...
//   NODE_DIR: where `npm install mailauth` put node_modules (build/node);
//   KEYS: lines "selector._domainkey.domain TXT-record-text", the only
//   DNS this verifier sees (any other name: NXDOMAIN);
//   FILE: messages. Prints one JSON line per signature of each file:
//   {"file", "s", "d", "a", "result", "comment"}; a file with no
//   signature prints {"file", "result": "none"}.
'use strict';
const fs = require('fs');
const path = require('path');
const { dkimVerify } = require(path.join(process.argv[2],
    'node_modules/mailauth/lib/dkim/verify'));

const keys = {};
for (const line of fs.readFileSync(process.argv[3], 'utf8').split('\n')) {
    const i = line.indexOf(' ');
    if (i > 0)
        keys[line.slice(0, i).toLowerCase()] = line.slice(i + 1);
}

async function resolver(name, type) {
    const k = keys[String(name).toLowerCase().replace(/\.$/, '')];
    if (type === 'TXT' && k !== undefined)
        return [[k]];
    const e = new Error('queryTxt ENOTFOUND ' + name);
    e.code = 'ENOTFOUND';
    throw e;
}

(async () => {
    for (const file of process.argv.slice(4)) {
        const r = await dkimVerify(fs.readFileSync(file), { resolver });
        if (!r.results.length)
            console.log(JSON.stringify({ file, result: 'none' }));
        for (const x of r.results)
            console.log(JSON.stringify({
                file, s: x.selector, d: x.signingDomain, a: x.algo,
                result: x.status.result, comment: x.status.comment || ''
            }));
    }
})().catch((e) => { console.error(e); process.exit(2); });
