// The web app of oauth-browser.mjs, bundled by esbuild and run in chromium: a
// loopback development app using the official @atproto/oauth-client-browser.
// First visit: signIn (the page goes to the PDS). Back from the PDS: the session,
// then real calls through @atproto/api's Agent. The outcome is left in
// window.__result for the driver.
import { BrowserOAuthClient } from '@atproto/oauth-client-browser'
import { Agent } from '@atproto/api'

async function main() {
  const cfg = await (await fetch('/config.json')).json()
  const redirect = `http://127.0.0.1:${location.port}/`
  const scope = 'atproto transition:generic'
  const client = new BrowserOAuthClient({
    clientMetadata: {
      client_id: `http://localhost?redirect_uri=${encodeURIComponent(redirect)}&scope=${encodeURIComponent(scope)}`,
      redirect_uris: [redirect],
      scope,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      dpop_bound_access_tokens: true,
    },
    handleResolver: cfg.pds,
    plcDirectoryUrl: cfg.plc,
    allowHttp: true,
  })
  const signedIn = await client.init()
  if (!signedIn) {
    document.body.dataset.state = 'signing-in'
    await client.signIn(cfg.handle, { state: 'browser-app-state' })
    return
  }
  const { session, state } = signedIn
  const agent = new Agent(session)
  const me = await agent.com.atproto.server.getSession()
  const post = await agent.com.atproto.repo.createRecord({
    repo: session.did,
    collection: 'app.bsky.feed.post',
    record: { $type: 'app.bsky.feed.post', text: 'posted from a browser app', createdAt: new Date().toISOString() },
  })
  await session.getTokenInfo(true)
  const list = await agent.com.atproto.repo.listRecords({ repo: session.did, collection: 'app.bsky.feed.post' })
  await session.signOut()
  window.__result = {
    ok: true,
    did: me.data.did,
    handle: me.data.handle,
    state,
    uri: post.data.uri,
    recordsAfterRefresh: list.data.records.length,
  }
}

main().catch((e) => {
  const causes = []
  for (let c = e; c; c = c.cause) causes.push(String(c?.message || c))
  window.__result = { ok: false, error: causes.join(' <- ') }
})
