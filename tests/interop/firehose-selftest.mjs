#!/usr/bin/env node
// Self-test of firehose-consumer.mjs (not of atbox): replays frames captured
// from the reference PDS (@atproto/pds 0.5.35, fixtures/firehose-frames.jsonl)
// through a tiny fake subscribeRepos WebSocket server, with a fake PLC
// directory serving the captured DID documents (fixtures/firehose-diddocs.json),
// and checks that the untouched stream passes and that tampered frames,
// gaps, duplicates, wrong keys, error frames etc. are flagged.
//   node tests/interop/firehose-selftest.mjs      (after npm ci --prefix tests/interop)
import './lib/quiet.mjs'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { WebSocketServer } from 'ws'
import { decodeAll, encode } from '@atproto/lex-cbor'
import { BlockMap, blocksToCarFile, readCarWithRoot } from '@atproto/repo'
import { Secp256k1Keypair } from '@atproto/crypto'

const here = dirname(fileURLToPath(import.meta.url))
const FRAMES = readFileSync(join(here, 'fixtures/firehose-frames.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => Buffer.from(JSON.parse(l).frame, 'base64'))
const DOCS = JSON.parse(readFileSync(join(here, 'fixtures/firehose-diddocs.json'), 'utf8'))

// ---------------------------------------------------------------------------
// Frame helpers

const decodeFrame = (bytes) => {
  const [header, body] = decodeAll(bytes)
  return { header, body }
}
const encodeFrame = (header, body) => Buffer.concat([encode(header), encode(body)])
const PARSED = FRAMES.map(decodeFrame)
const LAST_SEQ = PARSED[PARSED.length - 1].body.seq
const frameBySeq = (seq) => {
  const i = PARSED.findIndex((f) => f.body.seq === seq)
  assert.ok(i >= 0, `fixture has no seq ${seq}`)
  return i
}
/** Returns a copy of FRAMES with frame `seq` re-encoded after `fn(header, body)`. */
function withBody(frames, seq, fn) {
  const out = [...frames]
  const i = frameBySeq(seq)
  const { header, body } = decodeFrame(frames[i])
  fn(body, header)
  out[i] = encodeFrame(header, body)
  return out
}
async function rebuildCar(carBytes, fn) {
  const car = await readCarWithRoot(carBytes)
  const blocks = new BlockMap()
  for (const [cid, bytes] of car.blocks) blocks.set(cid, bytes)
  const root = (await fn(blocks, car.root)) ?? car.root
  return blocksToCarFile(root, blocks)
}

// ---------------------------------------------------------------------------
// Fake PLC directory and fake PDS firehose

let plcUrl
let plcDocs = DOCS
const plc = createServer((req, res) => {
  const did = decodeURIComponent(req.url.slice(1))
  const doc = plcDocs[did]
  if (!doc) {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ message: `DID not registered: ${did}` }))
    return
  }
  res.writeHead(200, { 'content-type': 'application/did+ld+json' })
  res.end(JSON.stringify(doc))
})

/**
 * Starts a subscribeRepos stand-in that sends `frames` (those with a seq above
 * ?cursor= when one is given) and then closes, or stays open (`keepOpen`).
 */
async function fakeFirehose(frames, { keepOpen = false } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((r) => wss.once('listening', r))
  wss.on('connection', (ws, req) => {
    const url = new URL(req.url, 'ws://x')
    assert.equal(url.pathname, '/xrpc/com.atproto.sync.subscribeRepos')
    const cursor = url.searchParams.get('cursor')
    for (const f of frames) {
      if (cursor !== null) {
        let seq
        try {
          seq = decodeFrame(f).body?.seq
        } catch {}
        if (typeof seq === 'number' && seq <= Number(cursor)) continue
      }
      ws.send(f)
    }
    if (!keepOpen) ws.close(1000)
  })
  return {
    url: `ws://127.0.0.1:${wss.address().port}`,
    close: () => new Promise((r) => {
      for (const c of wss.clients) c.terminate()
      wss.close(r)
    }),
  }
}

function runConsumer(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, 'firehose-consumer.mjs'), ...args])
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => {
      const lines = stdout.trim().split('\n')
      const last = lines.pop()
      const summary = JSON.parse(lines.pop())
      const events = lines.map((l) => JSON.parse(l))
      resolve({ code, events, summary, last, stderr })
    })
  })
}

/** Replays `frames` and returns the consumer's result. */
async function replay(frames, extraArgs = [], serverOpts = {}) {
  const srv = await fakeFirehose(frames, serverOpts)
  try {
    return await runConsumer(['--url', srv.url, '--plc', plcUrl, '--timeout-ms', '20000', ...extraArgs])
  } finally {
    await srv.close()
  }
}

const bySeq = (events, seq) => events.find((e) => e.seq === seq)
const failedSeqs = (events) => events.filter((e) => !e.ok).map((e) => e.seq)

before(async () => {
  await new Promise((r) => plc.listen(0, '127.0.0.1', r))
  plcUrl = `http://127.0.0.1:${plc.address().port}`
})
after(() => new Promise((r) => plc.close(r)))

// ---------------------------------------------------------------------------
// Tests

test('fixture: the reference PDS stream as captured', () => {
  const types = PARSED.map((f) => f.header.t)
  // account creation: #identity, #account, genesis #commit, #sync
  assert.deepEqual(types.slice(0, 4), ['#identity', '#account', '#commit', '#sync'])
  const genesis = PARSED[2].body
  assert.equal(genesis.since, null)
  assert.deepEqual(genesis.ops, [])
  assert.equal('prevData' in genesis, false)
  assert.equal(PARSED[3].body.rev, genesis.rev)
  for (const f of PARSED) assert.deepEqual(Object.keys(f.header).sort(), ['op', 't'])
  for (const [i, f] of PARSED.entries()) assert.equal(f.body.seq, i + 1)
})

test('the untouched reference stream validates', async () => {
  const r = await replay(FRAMES, ['--cursor', '0'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.last, `${PARSED.length} passed, 0 failed`)
  assert.equal(r.summary.events, PARSED.length)
  assert.equal(r.summary.invalid, 0)
  assert.deepEqual(r.summary.gaps, [])
  assert.equal(r.summary.lastSeq, LAST_SEQ)
  assert.equal(r.summary.end, 'closed')
  assert.deepEqual(failedSeqs(r.events), [])
  // the output line format
  const c = r.events.find((e) => e.type === '#commit' && e.ops.length === 3)
  assert.ok(c, 'an applyWrites commit with 3 ops')
  assert.deepEqual(c.ops.map((o) => o.action), ['create', 'update', 'delete'])
  for (const o of c.ops) {
    assert.equal(typeof o.path, 'string')
    assert.equal(o.cid === null, o.action === 'delete')
    assert.equal(o.prev === null, o.action === 'create')
  }
  assert.match(c.rev, /^[2-7a-z]{13}$/)
  assert.match(c.repo, /^did:plc:/)
  assert.ok(r.events.some((e) => e.type === '#sync' && e.ok))
  assert.ok(r.events.some((e) => e.type === '#account' && e.active === false && e.status === 'deactivated'))
})

test('--until-seq stops there (server keeps the socket open)', async () => {
  const r = await replay(FRAMES, ['--until-seq', '10'], { keepOpen: true })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.summary.end, 'until-seq')
  assert.equal(r.summary.lastSeq, 10)
  assert.equal(r.events.length, 10)
})

test('--until-seq not reached before the socket closes fails', async () => {
  const r = await replay(FRAMES, ['--until-seq', String(LAST_SEQ + 5)])
  assert.equal(r.code, 1)
  assert.match(r.summary.error, /not reached/)
  assert.equal(r.summary.invalid, 0)
})

test('--timeout-ms ends a quiet stream without --until-seq', async () => {
  const r = await replay(FRAMES.slice(0, 4), ['--timeout-ms', '1500'], { keepOpen: true })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.summary.end, 'timeout')
  assert.equal(r.summary.events, 4)
})

test('--cursor: replay starts after it; mid-stream start is fine', async () => {
  const r = await replay(FRAMES, ['--cursor', '10'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.events[0].seq, 11)
  assert.equal(r.summary.events, PARSED.length - 10)
})

test('replay not starting right after the cursor is a gap', async () => {
  const r = await replay(FRAMES.slice(5), ['--cursor', '0'])
  assert.equal(r.code, 1)
  assert.deepEqual(r.summary.gaps, [{ after: 0, next: 6, missing: 5 }])
})

test('a missing seq is reported as a gap (fatal unless --allow-gaps)', async () => {
  const i = PARSED.findIndex((f) => f.header.t === '#account' && f.body.active === false)
  const seq = PARSED[i].body.seq
  const frames = FRAMES.filter((_, j) => j !== i)
  const r = await replay(frames)
  assert.equal(r.code, 1)
  assert.equal(r.summary.invalid, 0)
  assert.deepEqual(r.summary.gaps, [{ after: seq - 1, next: seq + 1, missing: 1 }])
  assert.equal(r.last, `${PARSED.length - 1} passed, 1 failed`)
  const r2 = await replay(frames, ['--allow-gaps'])
  assert.equal(r2.code, 0, r2.stderr)
  assert.equal(r2.summary.gaps.length, 1)
})

test('a repeated frame (seq and rev not increasing) is flagged', async () => {
  const i = frameBySeq(5)
  const frames = [...FRAMES.slice(0, i + 1), FRAMES[i], ...FRAMES.slice(i + 1)]
  const r = await replay(frames)
  assert.equal(r.code, 1)
  assert.equal(r.summary.invalid, 1)
  const bad = r.events.filter((e) => !e.ok)
  assert.equal(bad.length, 1)
  assert.equal(bad[0].seq, 5)
  assert.match(bad[0].error, /seq 5 is not greater than the previous seq 5/)
  assert.match(bad[0].error, /rev \S+ is not newer/)
})

test('signatures are checked against the PLC #atproto key', async () => {
  const firstDid = PARSED[0].body.did
  const other = await Secp256k1Keypair.create()
  const doc = structuredClone(DOCS[firstDid])
  const vm = doc.verificationMethod.find((v) => v.id.endsWith('#atproto'))
  vm.publicKeyMultibase = other.did().slice('did:key:'.length)
  plcDocs = { ...DOCS, [firstDid]: doc }
  try {
    const r = await replay(FRAMES)
    assert.equal(r.code, 1)
    const expectBad = PARSED.filter(
      (f) => (f.header.t === '#commit' && f.body.repo === firstDid) || (f.header.t === '#sync' && f.body.did === firstDid),
    ).map((f) => f.body.seq)
    assert.deepEqual(failedSeqs(r.events), expectBad)
    for (const s of expectBad) assert.match(bySeq(r.events, s).error, /signature does not verify/)
  } finally {
    plcDocs = DOCS
  }
})

test('an unreachable server fails', async () => {
  const srv = await fakeFirehose([])
  const url = srv.url
  await srv.close()
  const r = await runConsumer(['--url', url, '--plc', plcUrl, '--timeout-ms', '5000'])
  assert.equal(r.code, 1)
  assert.equal(r.summary.end, 'error')
  assert.match(r.summary.connectionErrors[0], /ECONNREFUSED/)
})

test('tampered frames are flagged, each on its own seq', async () => {
  let frames = [...FRAMES]
  const expected = new Map() // seq -> regex its error must match
  const commitSeqs = PARSED.filter((f) => f.header.t === '#commit').map((f) => f.body.seq)
  const ofSeq = (seq) => PARSED[frameBySeq(seq)].body
  const singleCreate = commitSeqs.filter((s) => {
    const b = ofSeq(s)
    return b.ops.length === 1 && b.ops[0].action === 'create'
  })
  const singleDelete = commitSeqs.filter((s) => {
    const b = ofSeq(s)
    return b.ops.length === 1 && b.ops[0].action === 'delete'
  })
  const pick = (list) => {
    const s = list.find((x) => !expected.has(x))
    assert.ok(s !== undefined, 'fixture has enough commits of this kind')
    return s
  }

  // 1. non-canonical header: {"op":1,"t":...} in the wrong key order
  {
    const i = 0
    const { header, body } = PARSED[i]
    const t = Buffer.from(header.t)
    const hdr = Buffer.concat([Buffer.from([0xa2, 0x62, 0x6f, 0x70, 0x01, 0x61, 0x74, 0x60 + t.length]), t])
    frames[i] = Buffer.concat([hdr, encode(body)])
    expected.set(body.seq, /not canonical DAG-CBOR/)
  }
  // 2. one byte flipped inside a record block (raw frame edit)
  {
    const seq = pick(singleCreate)
    const i = frameBySeq(seq)
    const car = await readCarWithRoot(ofSeq(seq).blocks)
    const rec = Buffer.from(car.blocks.get(ofSeq(seq).ops[0].cid))
    const at = frames[i].indexOf(rec)
    assert.ok(at > 0)
    frames[i] = Buffer.from(frames[i])
    frames[i][at + rec.length - 3] ^= 0x01
    expected.set(seq, /Not a valid CID for bytes/)
  }
  // 3. wrong prevData
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).prevData))
    frames = withBody(frames, seq, (b) => {
      b.prevData = b.commit
    })
    expected.set(seq, /inverting the ops on the MST at commit.data gives \S+, not prevData/)
  }
  // 4. wrong since
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).since))
    frames = withBody(frames, seq, (b) => {
      b.since = '2222222222222'
    })
    expected.set(seq, /since 2222222222222 != the repo's previous rev/)
  }
  // 5. event rev != commit rev
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).since))
    frames = withBody(frames, seq, (b) => {
      b.rev = b.rev.slice(0, 11) + (b.rev[11] === 'z' ? 'y' : 'z') + b.rev[12]
    })
    expected.set(seq, /commit block rev \S+ != event rev/)
  }
  // 6. delete op without prev
  {
    const seq = pick(singleDelete)
    frames = withBody(frames, seq, (b) => {
      delete b.ops[0].prev
    })
    expected.set(seq, /a delete must carry prev/)
  }
  // 7. applyWrites commit with one op removed
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).ops.length >= 2 && ofSeq(s).ops.length < 10))
    frames = withBody(frames, seq, (b) => {
      b.ops = b.ops.filter((o) => o.action !== 'delete')
    })
    expected.set(seq, /inverting the ops on the MST at commit.data gives \S+, not prevData/)
  }
  // 8. the MST root node (commit.data) dropped from the CAR slice
  {
    const seq = pick(singleDelete)
    const b0 = ofSeq(seq)
    const carBytes = await rebuildCar(b0.blocks, async (blocks, root) => {
      const { decode } = await import('@ipld/dag-cbor')
      const commit = decode(blocks.get(root))
      assert.ok(blocks.has(commit.data))
      blocks.delete(commit.data)
    })
    frames = withBody(frames, seq, (b) => {
      b.blocks = carBytes
    })
    expected.set(seq, /covering proof/)
  }
  // 9. a covering-proof node (unchanged MST node sent for the inversion) dropped
  {
    // a commit whose slice holds an MST node that an earlier commit of the
    // same repo already sent, i.e. one that the commit did not change
    const seen = new Map()
    let target
    for (const f of PARSED) {
      if (f.header.t !== '#commit') continue
      const car = await readCarWithRoot(f.body.blocks)
      const sent = seen.get(f.body.repo) ?? new Set()
      const { decode } = await import('@ipld/dag-cbor')
      for (const [cid, bytes] of car.blocks) {
        const v = decode(bytes)
        if (target === undefined && !expected.has(f.body.seq) && Array.isArray(v?.e) && sent.has(cid.toString())) {
          target = { seq: f.body.seq, cid }
        }
      }
      for (const [cid] of car.blocks) sent.add(cid.toString())
      seen.set(f.body.repo, sent)
    }
    assert.ok(target, 'fixture has a commit carrying an unchanged MST node')
    const carBytes = await rebuildCar(ofSeq(target.seq).blocks, (blocks) => {
      blocks.delete(target.cid)
    })
    frames = withBody(frames, target.seq, (b) => {
      b.blocks = carBytes
    })
    expected.set(target.seq, /covering proof|block not found/)
  }
  // 10. tooBig
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).since))
    frames = withBody(frames, seq, (b) => {
      b.tooBig = true
    })
    expected.set(seq, /tooBig must be false/)
  }
  // 11. forged signature (commit block re-encoded with a flipped sig bit, so
  //     all hashes are right and only the signature is wrong)
  {
    const seq = pick(commitSeqs.filter((s) => ofSeq(s).since))
    let newRoot
    const carBytes = await rebuildCar(ofSeq(seq).blocks, async (blocks, root) => {
      const { decode } = await import('@ipld/dag-cbor')
      const commit = decode(blocks.get(root))
      commit.sig = Uint8Array.from(commit.sig)
      commit.sig[10] ^= 0x01
      blocks.delete(root)
      newRoot = await blocks.add(commit)
      return newRoot
    })
    frames = withBody(frames, seq, (b) => {
      b.blocks = carBytes
      b.commit = newRoot
    })
    expected.set(seq, /signature does not verify/)
  }
  // 12. record block missing from the slice
  {
    const seq = pick(singleCreate)
    const cid = ofSeq(seq).ops[0].cid
    const carBytes = await rebuildCar(ofSeq(seq).blocks, (blocks) => {
      assert.ok(blocks.has(cid))
      blocks.delete(cid)
    })
    frames = withBody(frames, seq, (b) => {
      b.blocks = carBytes
    })
    expected.set(seq, /record block \S+ is not in blocks/)
  }
  // 13. create op naming a wrong cid
  {
    const seq = pick(singleCreate)
    const foreign = ofSeq(singleCreate.find((s) => s !== seq)).ops[0].cid // a record of another commit
    frames = withBody(frames, seq, (b) => {
      b.ops[0].cid = foreign
    })
    expected.set(seq, /is not in blocks.*verifyProofs/)
  }
  // 14. create op carrying prev
  {
    const seq = pick(singleCreate)
    frames = withBody(frames, seq, (b) => {
      b.ops[0].prev = b.ops[0].cid
    })
    expected.set(seq, /a create must not carry prev/)
  }
  // 15. #identity with a malformed handle
  {
    const seq = PARSED.find((f) => f.header.t === '#identity' && !expected.has(f.body.seq)).body.seq
    frames = withBody(frames, seq, (b) => {
      b.handle = 'not a handle'
    })
    expected.set(seq, /lexicon/)
  }
  // 16. #account active=true with a status
  {
    const seq = PARSED.find((f) => f.header.t === '#account' && f.body.active && !expected.has(f.body.seq)).body.seq
    frames = withBody(frames, seq, (b) => {
      b.status = 'deactivated'
    })
    expected.set(seq, /active=true must not carry a status/)
  }
  // 17. #sync whose rev is not its commit's
  {
    const seq = PARSED.find((f) => f.header.t === '#sync' && !expected.has(f.body.seq)).body.seq
    frames = withBody(frames, seq, (b) => {
      b.rev = '2222222222222'
    })
    expected.set(seq, /commit block rev \S+ != event rev 2222222222222/)
  }
  // 18. appended: an #info (fine), an unknown message type, an error frame
  frames.push(encodeFrame({ op: 1, t: '#info' }, { name: 'OutdatedCursor', message: 'test' }))
  frames.push(
    encodeFrame({ op: 1, t: '#handle' }, { seq: LAST_SEQ + 1, did: PARSED[0].body.did, handle: 'x.test', time: PARSED[0].body.time }),
  )
  expected.set(LAST_SEQ + 1, /unknown or deprecated message type #handle/)
  frames.push(encodeFrame({ op: -1 }, { error: 'ConsumerTooSlow', message: 'bye' }))

  const r = await replay(frames)
  if (process.env.DEBUG_SELFTEST) console.error(r.events.slice(0, 3), r.stderr)
  assert.equal(r.code, 1)
  for (const [seq, re] of expected) {
    const e = bySeq(r.events, seq)
    assert.ok(e, `an output line for seq ${seq}`)
    assert.equal(e.ok, false, `seq ${seq} must be flagged (${re})`)
    assert.match(e.error, re, `seq ${seq}`)
  }
  const unexpected = r.events.filter((e) => !e.ok && e.seq !== null && !expected.has(e.seq))
  assert.deepEqual(unexpected, [], 'only the tampered frames are flagged')
  const info = r.events.find((e) => e.type === '#info')
  assert.equal(info.ok, true)
  assert.equal(info.name, 'OutdatedCursor')
  const err = r.events.find((e) => e.type === 'error')
  assert.equal(err.ok, false)
  assert.equal(err.name, 'ConsumerTooSlow')
  assert.equal(r.summary.invalid, expected.size + 1)
  assert.deepEqual(r.summary.gaps, [])
})
