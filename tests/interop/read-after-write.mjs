#!/usr/bin/env node
// Read-after-write as the Bluesky app meets it: @atproto/api's Agent posts and edits
// its profile on a PDS whose AppView (appview-standin.mjs, verifying every service
// token) lags behind — its canned answers carry an older `atproto-repo-rev` — and then
// reads its timeline, its own feed, a thread, its profile.
//
//   node tests/interop/read-after-write.mjs --pds URL --appview URL --handle H --password P
//
// Prints one JSON line: {"ok": true, "checks": {...}} or {"ok": false, "error": "..."}.
import './lib/quiet.mjs'
import { Agent, CredentialSession } from '@atproto/api'

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1]

const OLD = '2000-01-01T00:00:00.000Z'
const checks = {}
function check(name, cond, detail) {
  checks[name] = cond ? 'ok' : `failed: ${JSON.stringify(detail)}`
  if (!cond) throw new Error(`${name}: ${JSON.stringify(detail)}`)
}

async function override(nsid, status, body, rev) {
  const r = await fetch(`${args.appview}/_standin/override`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ nsid, status, body, headers: rev ? { 'atproto-repo-rev': rev } : {} }),
  })
  if (!r.ok) throw new Error(`override ${nsid}: ${r.status} ${await r.text()}`)
}

function postView(ref, did, handle, text, extra = {}) {
  return {
    uri: ref.uri,
    cid: ref.cid,
    author: { did, handle, displayName: 'Before' },
    record: { $type: 'app.bsky.feed.post', text, createdAt: OLD },
    indexedAt: OLD,
    likeCount: 7,
    ...extra,
  }
}

async function main() {
  const session = new CredentialSession(new URL(args.pds))
  await session.login({ identifier: args.handle, password: args.password })
  const agent = new Agent(session)
  const did = session.did
  const handle = args.handle

  // What the AppView has seen: the old profile and one post.
  await agent.com.atproto.repo.putRecord({
    repo: did, collection: 'app.bsky.actor.profile', rkey: 'self',
    record: { $type: 'app.bsky.actor.profile', displayName: 'Before' },
  })
  const seen = await agent.post({ text: 'seen by the AppView', createdAt: OLD })
  const { data: { rev: seenRev } } = await agent.com.atproto.sync.getLatestCommit({ did })

  // Written since: a new avatar and name, a new post, a reply to the old post.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64')
  const { data: { blob } } = await agent.uploadBlob(png, { encoding: 'image/png' })
  await agent.com.atproto.repo.putRecord({
    repo: did, collection: 'app.bsky.actor.profile', rkey: 'self',
    record: { $type: 'app.bsky.actor.profile', displayName: 'After', description: 'new bio', avatar: blob },
  })
  const fresh = await agent.post({ text: 'my brand new post', createdAt: new Date().toISOString() })
  const reply = await agent.post({
    text: 'replying to myself',
    reply: { root: seen, parent: seen },
    createdAt: new Date().toISOString(),
  })

  // The lagging AppView's answers.
  const oldItem = { post: postView(seen, did, handle, 'seen by the AppView') }
  await override('app.bsky.feed.getTimeline', 200, { feed: [oldItem] }, seenRev)
  await override('app.bsky.feed.getAuthorFeed', 200, { feed: [oldItem] }, seenRev)
  await override('app.bsky.actor.getProfile', 200, { did, handle, displayName: 'Before', followersCount: 3 }, seenRev)
  await override('app.bsky.feed.getPostThread', 200, {
    thread: { $type: 'app.bsky.feed.defs#threadViewPost', post: postView(seen, did, handle, 'seen by the AppView'), replies: [] },
  }, seenRev)

  const timeline = await agent.getTimeline()
  const tl = timeline.data.feed.map((i) => i.post.uri)
  check('timelineHasNewPostFirst', tl[0] === reply.uri && tl[1] === fresh.uri && tl[2] === seen.uri, tl)
  check('timelineNewPostIsOwn', timeline.data.feed[1].post.author.did === did && timeline.data.feed[1].post.likeCount === 0, timeline.data.feed[1])
  const lag = Number(timeline.headers['atproto-upstream-lag'])
  check('upstreamLagHeader', Number.isFinite(lag) && lag >= 0, timeline.headers)

  const own = await agent.getAuthorFeed({ actor: did })
  const ownUris = own.data.feed.map((i) => i.post.uri)
  check('authorFeedHasNewPosts', ownUris.includes(fresh.uri) && ownUris.includes(seen.uri), ownUris)
  const oldInOwn = own.data.feed.find((i) => i.post.uri === seen.uri)
  check('authorFeedNewName', oldInOwn.post.author.displayName === 'After', oldInOwn.post.author)
  check('avatarFromTheBox', /com\.atproto\.sync\.getBlob\?did=.*&cid=/.test(oldInOwn.post.author.avatar ?? ''), oldInOwn.post.author)

  const profile = await agent.getProfile({ actor: did })
  check('profileMended', profile.data.displayName === 'After' && profile.data.description === 'new bio' && profile.data.followersCount === 3, profile.data)
  check('profileLag', profile.headers['atproto-upstream-lag'] !== undefined, profile.headers)

  const thread = await agent.getPostThread({ uri: seen.uri })
  const replies = thread.data.thread.replies ?? []
  check('threadHasOwnReply', replies[0]?.post?.uri === reply.uri, thread.data.thread)

  // The AppView has not seen the new post at all: the thread comes from the box.
  await override('app.bsky.feed.getPostThread', 400, { error: 'NotFound', message: `Post not found: ${fresh.uri}` }, seenRev)
  const local = await agent.getPostThread({ uri: fresh.uri })
  check('notFoundThreadBuiltLocally', local.data.thread.post?.uri === fresh.uri && local.data.thread.post.record.text === 'my brand new post', local.data.thread)

  // Someone else's profile, and an AppView that is up to date, are left alone.
  const { data: { rev: headRev } } = await agent.com.atproto.sync.getLatestCommit({ did })
  await override('app.bsky.actor.getProfile', 200, { did: 'did:plc:someoneelse234567abcdefg', handle: 'other.test', displayName: 'Other' }, seenRev)
  const other = await agent.getProfile({ actor: 'did:plc:someoneelse234567abcdefg' })
  check('othersProfileUntouched', other.data.displayName === 'Other', other.data)
  await override('app.bsky.feed.getTimeline', 200, { feed: [oldItem] }, headRev)
  const upToDate = await agent.getTimeline()
  check('upToDateUntouched', upToDate.data.feed.length === 1 && upToDate.headers['atproto-upstream-lag'] === undefined, upToDate.data)
}

main().then(
  () => console.log(JSON.stringify({ ok: true, checks })),
  (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err), checks }))
    process.exitCode = 1
  },
)
