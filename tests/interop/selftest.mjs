#!/usr/bin/env node
// Self-test of the interop harness itself (not of atbox): drives the three
// scripts as a Rust test would and checks that tampered CARs are rejected.
//   node tests/interop/selftest.mjs      (after npm ci --prefix tests/interop)
import './lib/quiet.mjs'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Secp256k1Keypair } from '@atproto/crypto'
import {
  BlockMap,
  Leaf,
  MST,
  MemoryBlockstore,
  blocksToCarFile,
  cborToLex,
  readCarWithRoot,
  signCommit,
} from '@atproto/repo'
import { recordFromJson } from './lib/common.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const tmp = mkdtempSync(join(tmpdir(), 'atbox-interop-'))
after(() => rmSync(tmp, { recursive: true, force: true }))

function run(script, { input, args = [] } = {}) {
  const res = spawnSync(process.execPath, [join(here, script), ...args], {
    input: input === undefined ? undefined : JSON.stringify(input),
    encoding: 'utf8',
  })
  const lines = res.stdout.trim().split('\n')
  assert.equal(lines.length, 1, `${script} must print one line, got: ${res.stdout}\n${res.stderr}`)
  return { code: res.status, out: JSON.parse(lines[0]), stderr: res.stderr }
}

const K256_HEX = '9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c'
const P256_HEX = '1a7b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819'
const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const post = (text, extra = {}) => ({
  $type: 'app.bsky.feed.post', text, createdAt: '2024-01-01T00:00:00.000Z', ...extra,
})
const COMMITS = [
  [
    { action: 'create', collection: 'app.bsky.actor.profile', rkey: 'self', record: {
      $type: 'app.bsky.actor.profile', displayName: 'Alice',
      avatar: { $type: 'blob', ref: { $link: 'bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy' },
        mimeType: 'image/png', size: 1234 } } },
    ...Array.from({ length: 40 }, (_, i) => ({
      action: 'create', collection: 'app.bsky.feed.post',
      rkey: `3jzfcijpj2z${String(i).padStart(2, '0')}`, record: post(`post ${i}`) })),
  ],
  [
    { action: 'update', collection: 'app.bsky.feed.post', rkey: '3jzfcijpj2z00',
      record: post('edited', { b: { $bytes: 'AQID' }, l: { $link: 'bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454' } }) },
    { action: 'delete', collection: 'app.bsky.feed.post', rkey: '3jzfcijpj2z01' },
  ],
  [{ action: 'delete', collection: 'app.bsky.feed.post', rkey: '3jzfcijpj2z02' }],
]

function makeRepo(name, extra = {}) {
  const out = join(tmp, `${name}.car`)
  const res = run('make-repo-car.mjs', {
    input: { keyType: 'k256', privateKeyHex: K256_HEX, did: DID, commits: COMMITS, out, ...extra },
  })
  assert.equal(res.code, 0, res.stderr)
  return { out, ...res.out }
}

function verify(car, did, didKey, flags = []) {
  return run('verify-car.mjs', { args: [...flags, car, did, didKey] })
}

test('mst-root: empty tree, order independence, put/update/delete', () => {
  const rec = (n) => ({ $type: 'com.example.record', n })
  const keys = Array.from({ length: 300 }, (_, i) => `com.example.record/3jqfcqzm3f${String(i).padStart(3, '0')}`)
  const forward = keys.map((key, i) => ({ action: 'put', key, record: rec(i) }))
  const reversed = [...forward].reverse()
  const churn = [
    ...keys.map((key) => ({ action: 'put', key, record: rec(-1) })),
    { action: 'put', key: 'com.example.other/x', record: rec(0) },
    ...forward,
    { action: 'delete', key: 'com.example.other/x' },
  ]
  const res = run('mst-root.mjs', { input: { cases: [{ ops: [] }, { ops: forward }, { ops: reversed }, { ops: churn }] } })
  assert.equal(res.code, 0, res.stderr)
  assert.equal(res.out.roots[0], 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
  assert.deepEqual(res.out.counts, [0, 300, 300, 300])
  assert.equal(res.out.roots[1], res.out.roots[2])
  assert.equal(res.out.roots[1], res.out.roots[3])
})

test('mst-root: errors are reported', () => {
  for (const ops of [
    [{ action: 'delete', key: 'com.example.record/absent' }],
    [{ action: 'put', key: 'no-slash', record: {} }],
    [{ action: 'put', key: 'com.example.record/a', record: { f: 1.5 } }],
  ]) {
    const res = run('mst-root.mjs', { input: { cases: [{ ops }] } })
    assert.equal(res.code, 1)
    assert.equal(typeof res.out.error, 'string')
  }
})

test('make-repo-car + verify-car round trip (k256)', () => {
  const made = makeRepo('k256')
  assert.match(made.didKey, /^did:key:zQ3s/)
  assert.equal(made.records.length, 41 - 2)
  const v = verify(made.out, DID, made.didKey)
  assert.equal(v.code, 0, v.stderr)
  assert.equal(v.out.ok, true)
  assert.equal(v.out.commit, made.commit)
  assert.equal(v.out.data, made.data)
  assert.equal(v.out.rev, made.rev)
  assert.equal(v.out.unreachableBlocks, 0)
  assert.deepEqual(v.out.records.map(({ value, ...r }) => r), made.records)
  const edited = v.out.records.find((r) => r.rkey === '3jzfcijpj2z00')
  assert.deepEqual(edited.value.b, { $bytes: 'AQID' })
  assert.deepEqual(edited.value.l, { $link: 'bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454' })
  // same data root as mst-root for the same final state
  const ops = made.records.map((r) => ({ action: 'put', key: `${r.collection}/${r.rkey}`,
    record: v.out.records.find((x) => x.rkey === r.rkey && x.collection === r.collection).value }))
  const m = run('mst-root.mjs', { input: { cases: [{ ops }] } })
  assert.equal(m.out.roots[0], made.data)
})

test('make-repo-car (p256) and deterministic "rev"', () => {
  const a = run('make-repo-car.mjs', { input: { keyType: 'p256', privateKeyHex: P256_HEX, did: DID,
    commits: COMMITS, out: join(tmp, 'p256a.car'), rev: '3kaaaaaaaaaaa' } })
  const b = run('make-repo-car.mjs', { input: { keyType: 'p256', privateKeyHex: P256_HEX, did: DID,
    commits: COMMITS, out: join(tmp, 'p256b.car'), rev: '3kaaaaaaaaaaa' } })
  assert.equal(a.code, 0, a.stderr)
  assert.match(a.out.didKey, /^did:key:zDn/)
  assert.equal(a.out.rev, '3kaaaaaaaaaaa')
  assert.equal(a.out.commit, b.out.commit)
  assert.deepEqual(readFileSync(join(tmp, 'p256a.car')), readFileSync(join(tmp, 'p256b.car')))
  const v = verify(join(tmp, 'p256a.car'), DID, a.out.didKey)
  assert.equal(v.code, 0, v.stderr)
})

test('make-repo-car rejects non-create writes in the first commit', () => {
  const res = run('make-repo-car.mjs', { input: { keyType: 'k256', privateKeyHex: K256_HEX, did: DID,
    commits: [[{ action: 'delete', collection: 'a.b.c', rkey: 'x' }]], out: join(tmp, 'bad.car') } })
  assert.equal(res.code, 1)
})

test('verify-car rejects wrong did, wrong key, flipped bytes, missing blocks', async () => {
  const made = makeRepo('tamper')
  const other = await Secp256k1Keypair.create()
  for (const [did, key] of [['did:plc:someoneelse', made.didKey], [DID, other.did()]]) {
    const v = verify(made.out, did, key)
    assert.equal(v.code, 1)
    assert.equal(v.out.ok, false)
  }
  const car = readFileSync(made.out)
  // flip one byte in the last block (a record or MST node)
  const flipped = Buffer.from(car)
  flipped[flipped.length - 5] ^= 0x01
  writeFileSync(join(tmp, 'flipped.car'), flipped)
  let v = verify(join(tmp, 'flipped.car'), DID, made.didKey)
  assert.equal(v.code, 1)
  assert.match(v.out.error, /CID/i)
  // drop one record block
  const { root, blocks } = await readCarWithRoot(new Uint8Array(car))
  const rec = made.records[3]
  blocks.delete((await (async () => {
    for (const e of blocks.entries()) if (e.cid.toString() === rec.cid) return e.cid
  })()))
  writeFileSync(join(tmp, 'missing.car'), await blocksToCarFile(root, blocks))
  v = verify(join(tmp, 'missing.car'), DID, made.didKey)
  assert.equal(v.code, 1)
})

test('verify-car rejects a bad signature inside a well-formed block', async () => {
  const made = makeRepo('badsig')
  const { root, blocks } = await readCarWithRoot(new Uint8Array(readFileSync(made.out)))
  const commit = cborToLex(blocks.get(root))
  commit.sig = Uint8Array.from(commit.sig)
  commit.sig[10] ^= 0x01
  blocks.delete(root)
  const newRoot = await blocks.add(commit)
  writeFileSync(join(tmp, 'badsig.car'), await blocksToCarFile(newRoot, blocks))
  const v = verify(join(tmp, 'badsig.car'), DID, made.didKey)
  assert.equal(v.code, 1)
  assert.match(v.out.error, /signature/i)
})

test('verify-car rejects a non-canonical MST (reference alone accepts it)', async () => {
  const keypair = await Secp256k1Keypair.import(K256_HEX)
  const storage = new MemoryBlockstore()
  const blocks = new BlockMap()
  // 'com.example.record/3jqfcqzm3fx2j' belongs on layer 2; force everything into one layer-0 node
  const keys = ['com.example.record/3jqfcqzm3fo2j', 'com.example.record/3jqfcqzm3fx2j', 'com.example.record/3jqfcqzm3fz2j']
  const leaves = []
  for (const [i, key] of keys.entries()) {
    leaves.push(new Leaf(key, await blocks.add(recordFromJson({ $type: 'com.example.record', i }))))
  }
  const mst = await MST.create(storage, leaves, { layer: 0 })
  const unstored = await mst.getUnstoredBlocks()
  blocks.addMap(unstored.blocks)
  const commit = await signCommit({ did: DID, version: 3, rev: '3kaaaaaaaaaaa', prev: null, data: unstored.root }, keypair)
  const root = await blocks.add(commit)
  const path = join(tmp, 'noncanon.car')
  writeFileSync(path, await blocksToCarFile(root, blocks))
  const strict = verify(path, DID, keypair.did())
  assert.equal(strict.code, 1)
  assert.match(strict.out.error, /not canonical/)
  const lax = verify(path, DID, keypair.did(), ['--reference-only'])
  assert.equal(lax.code, 0, lax.stderr)
})
