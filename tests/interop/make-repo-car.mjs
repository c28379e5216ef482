#!/usr/bin/env node
// Builds a repo with the reference Repo class and writes its full export CAR.
// See README.md for the contract.
//
// stdin:  {"keyType":"k256"|"p256","privateKeyHex":"...","did":"did:plc:...",
//          "commits":[[{"action":"create"|"update"|"delete","collection":"...",
//                       "rkey":"...","record":{...}}, ...], ...],
//          "out":"/path/to/file.car",
//          "rev":"<optional TID: re-sign the final commit with this rev>"}
// stdout: {"commit":"<cid>","data":"<mst root cid>","rev":"...",
//          "didKey":"did:key:z...","records":[{"collection","rkey","cid"},...]}
// On error: {"error":"..."} on stdout, message on stderr, exit 1.
import './lib/quiet.mjs'
import { writeFileSync } from 'node:fs'
import { P256Keypair, Secp256k1Keypair } from '@atproto/crypto'
import {
  MemoryBlockstore,
  Repo,
  WriteOpAction,
  concatBytesAsync,
  getFullRepo,
} from '@atproto/repo'
import { compareKeys, emit, errMessage, readStdinJson, recordFromJson } from './lib/common.mjs'

async function importKey(keyType, hex) {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new Error('"privateKeyHex" must be 32 bytes as 64 hex digits')
  }
  if (keyType === 'k256') return Secp256k1Keypair.import(hex.toLowerCase())
  if (keyType === 'p256') return P256Keypair.import(hex.toLowerCase())
  throw new Error(`unknown keyType ${JSON.stringify(keyType)} (want "k256" or "p256")`)
}

function toWriteOp(w, where) {
  if (!w || typeof w.collection !== 'string' || typeof w.rkey !== 'string') {
    throw new Error(`${where}: missing "collection"/"rkey"`)
  }
  const { collection, rkey } = w
  switch (w.action) {
    case 'create':
      return { action: WriteOpAction.Create, collection, rkey, record: recordFromJson(w.record) }
    case 'update':
      return { action: WriteOpAction.Update, collection, rkey, record: recordFromJson(w.record) }
    case 'delete':
      return { action: WriteOpAction.Delete, collection, rkey }
    default:
      throw new Error(`${where}: unknown action ${JSON.stringify(w.action)}`)
  }
}

try {
  const input = readStdinJson()
  if (typeof input.did !== 'string') throw new Error('missing "did"')
  if (typeof input.out !== 'string') throw new Error('missing "out"')
  if (!Array.isArray(input.commits) || input.commits.length === 0 ||
      !input.commits.every(Array.isArray)) {
    throw new Error('"commits" must be a non-empty array of arrays of writes')
  }
  const keypair = await importKey(input.keyType, input.privateKeyHex)
  const batches = input.commits.map((batch, i) =>
    batch.map((w, j) => toWriteOp(w, `commit ${i} write ${j}`)))

  // Repo.create() feeds every initial write to MST.add, i.e. treats it as a
  // create, so the first batch may contain creates only.
  const bad = batches[0].find((op) => op.action !== WriteOpAction.Create)
  if (bad) {
    throw new Error(`commit 0 may only contain creates (got ${bad.action} ${bad.collection}/${bad.rkey})`)
  }

  const storage = new MemoryBlockstore()
  let repo = await Repo.create(storage, input.did, keypair, batches[0])
  for (const batch of batches.slice(1)) {
    repo = await repo.applyWrites(batch, keypair)
  }
  if (input.rev !== undefined) {
    if (typeof input.rev !== 'string') throw new Error('"rev" must be a string')
    repo = await repo.resignCommit(input.rev, keypair)
  }

  // Same stream the reference sync provider serves for getRepo: header with
  // root = commit, then the commit block, then every reachable MST node and
  // record block.
  const car = await concatBytesAsync(getFullRepo(storage, repo.cid))
  writeFileSync(input.out, car)

  const records = []
  for await (const r of repo.walkRecords()) {
    records.push({ collection: r.collection, rkey: r.rkey, cid: r.cid.toString() })
  }
  records.sort((a, b) => compareKeys(`${a.collection}/${a.rkey}`, `${b.collection}/${b.rkey}`))

  emit({
    commit: repo.cid.toString(),
    data: repo.commit.data.toString(),
    rev: repo.commit.rev,
    didKey: keypair.did(),
    records,
  })
} catch (err) {
  const msg = errMessage(err)
  emit({ error: msg })
  process.stderr.write(`make-repo-car: ${msg}\n`)
  process.exit(1)
}
