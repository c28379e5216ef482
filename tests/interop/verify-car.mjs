#!/usr/bin/env node
// Verifies a repo export CAR with the reference implementation.
// See README.md for the contract.
//
// usage:  node verify-car.mjs [--reference-only] <car path> <did> <did:key>
// stdout: {"ok":true,"commit":..,"data":..,"rev":..,"blocks":N,"unreachableBlocks":M,
//          "records":[{"collection","rkey","cid","value"},...]}           exit 0
//         {"ok":false,"error":"..."}                                       exit 1
//
// Checks, in order:
//  1. verifyRepoCar(car, did, didKey) from @atproto/repo: CAR parses with
//     exactly one root, every block's bytes hash to its CID, the root is a
//     commit for `did` whose signature verifies against `didKey`, the whole
//     MST is walked and every leaf's record block is present.
//  2. every record block decodes as a Lex map (Repo.walkRecords).
//  Extra strictness on top of the reference (skipped with --reference-only):
//  3. the root block is a v3 commit (def.commit: version 3, rev present).
//  4. the MST is canonical: re-inserting all leaves into an empty reference
//     MST yields exactly the commit's `data` CID (catches wrong layers, key
//     order, or node splits that the reference reader tolerates).
import './lib/quiet.mjs'
import { readFileSync } from 'node:fs'
import {
  MST,
  MemoryBlockstore,
  Repo,
  def,
  readCarWithRoot,
  verifyRepoCar,
} from '@atproto/repo'
import { compareKeys, emit, errMessage, recordToJson } from './lib/common.mjs'

function fail(msg) {
  emit({ ok: false, error: msg })
  process.stderr.write(`verify-car: ${msg}\n`)
  process.exit(1)
}

const args = process.argv.slice(2)
const referenceOnly = args[0] === '--reference-only'
if (referenceOnly) args.shift()
if (args.length !== 3) {
  fail('usage: verify-car.mjs [--reference-only] <car path> <did> <did:key>')
}
const [carPath, did, didKey] = args

try {
  let bytes
  try {
    bytes = readFileSync(carPath)
  } catch (err) {
    throw new Error(`cannot read ${carPath}: ${err.message}`)
  }
  bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)

  // 1. The reference verification.
  const verified = await verifyRepoCar(bytes, did, didKey)

  // Re-open the (already verified) CAR to read commit fields and records.
  const { root, blocks } = await readCarWithRoot(bytes)
  const storage = new MemoryBlockstore(blocks)
  if (!referenceOnly) {
    // 3. strict v3 commit (Repo.load would also accept a v2 commit).
    await storage.readObj(root, def.commit)
  }
  const repo = await Repo.load(storage, root)

  // 2. All records, in MST order.
  const records = []
  for await (const r of repo.walkRecords()) {
    records.push({
      collection: r.collection,
      rkey: r.rkey,
      cid: r.cid.toString(),
      value: recordToJson(r.record),
    })
  }
  records.sort((a, b) => compareKeys(`${a.collection}/${a.rkey}`, `${b.collection}/${b.rkey}`))

  // Sanity: the reference's own "creates" list describes the same records.
  const creates = verified.creates
    .map((c) => `${c.collection}/${c.rkey} ${c.cid.toString()}`)
    .sort(compareKeys)
  const walked = records.map((r) => `${r.collection}/${r.rkey} ${r.cid}`)
  if (creates.length !== walked.length || creates.some((c, i) => c !== walked[i])) {
    throw new Error('verifyRepoCar creates do not match the records walked from the MST')
  }

  if (!referenceOnly) {
    // 4. canonical MST.
    let rebuilt = await MST.create(new MemoryBlockstore())
    for (const leaf of await repo.data.leaves()) {
      rebuilt = await rebuilt.add(leaf.key, leaf.value)
    }
    const rebuiltRoot = await rebuilt.getPointer()
    if (!rebuiltRoot.equals(repo.commit.data)) {
      throw new Error(
        `MST is not canonical: commit data is ${repo.commit.data.toString()}, ` +
        `but the same ${records.length} leaves build ${rebuiltRoot.toString()}`)
    }
  }

  // Informational: blocks in the CAR that are not reachable from the commit.
  const reachable = await repo.data.allCids()
  reachable.add(root)
  let unreachable = 0
  blocks.forEach((_bytes, cid) => {
    if (!reachable.has(cid)) unreachable++
  })

  emit({
    ok: true,
    commit: root.toString(),
    data: repo.commit.data.toString(),
    rev: repo.commit.rev,
    blocks: blocks.size,
    unreachableBlocks: unreachable,
    records,
  })
} catch (err) {
  fail(errMessage(err))
}
