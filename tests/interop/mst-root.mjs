#!/usr/bin/env node
// Computes reference MST roots. See README.md for the contract.
//
// stdin:  {"cases":[{"ops":[{"action":"put","key":"coll/rkey","record":{...}},
//                           {"action":"delete","key":"coll/rkey"}, ...]}, ...]}
// stdout: {"roots":["bafyrei...",...],"counts":[N,...]}   (one line)
// On error: {"error":"..."} on stdout, message on stderr, exit 1.
import './lib/quiet.mjs'
import { MST, MemoryBlockstore, cidForRecord } from '@atproto/repo'
import { emit, errMessage, readStdinJson, recordFromJson } from './lib/common.mjs'

async function runCase(c, idx) {
  if (!c || !Array.isArray(c.ops)) {
    throw new Error(`case ${idx}: missing "ops" array`)
  }
  const storage = new MemoryBlockstore()
  let mst = await MST.create(storage)
  for (const [opIdx, op] of c.ops.entries()) {
    const where = `case ${idx} op ${opIdx}`
    if (typeof op?.key !== 'string') throw new Error(`${where}: missing "key"`)
    if (op.action === 'put') {
      if (op.record === undefined) throw new Error(`${where}: put without "record"`)
      const cid = await cidForRecord(recordFromJson(op.record))
      // MST.add/update validate the key (collection/rkey syntax) themselves.
      const existing = await mst.get(op.key)
      mst = existing === null
        ? await mst.add(op.key, cid)
        : await mst.update(op.key, cid)
    } else if (op.action === 'delete') {
      // MST.delete throws if the key is absent.
      mst = await mst.delete(op.key)
    } else {
      throw new Error(`${where}: unknown action ${JSON.stringify(op.action)}`)
    }
  }
  const root = await mst.getPointer()
  const count = await mst.leafCount()
  return { root: root.toString(), count }
}

try {
  const input = readStdinJson()
  if (!input || !Array.isArray(input.cases)) {
    throw new Error('input must be {"cases":[...]}')
  }
  const roots = []
  const counts = []
  for (const [i, c] of input.cases.entries()) {
    const { root, count } = await runCase(c, i)
    roots.push(root)
    counts.push(count)
  }
  emit({ roots, counts })
} catch (err) {
  const msg = errMessage(err)
  emit({ error: msg })
  process.stderr.write(`mst-root: ${msg}\n`)
  process.exit(1)
}
