// Token mode against the real registry configured with `auth.token` and berth's certificate as its
// rootcertbundle: skopeo pushes and pulls through berth, and the registry itself refuses whatever a token
// does not grant, reached through berth or directly. One registry and one berth for the whole file.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import https from 'node:https'
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { SignJWT, decodeJwt } from 'jose'
import { startBerth, request, basic, sleep, type Berth } from '../helper.js'
import { startRegistry, freePort, certDir, ociLayout, skopeo, type Registry, type Layout, fileContext } from './fixtures.js'
import { makeTokenCert } from '../../src/certs.js'
import { createKey, revokeKey } from '../../src/auth/keys.js'

const ctx = fileContext()
let dir: string
let registry: Registry
let berth: Berth
let certs: string
let image: Layout
let tokenKey: string
let keysFile: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-token-'))
  ctx.after(() => rmSync(dir, { recursive: true, force: true }))
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, ['alice', 'reader'].map((u) => execFileSync('htpasswd', ['-nbB', '-C', '4', u, `${u}-pw`], { encoding: 'utf8' }).trim()).join('\n') + '\n')
  const signing = await makeTokenCert(join(dir, 'token'), 'berth-test')
  tokenKey = signing.key
  keysFile = join(dir, 'keys.json')
  const registryPort = await freePort()
  berth = await startBerth(ctx, [`https://127.0.0.1:${registryPort}`], {
    auth: {
      htpasswd,
      keys: keysFile,
      throttle: { failures: 1000 },
      token: { issuer: 'berth-test', service: 'registry.test', key: signing.key, cert: signing.cert, ttl: '5m' },
      access: [
        { users: ['alice'], repositories: ['**'], actions: ['pull', 'push', 'catalog'] },
        { users: ['reader'], repositories: ['team/**'], actions: ['pull'] },
        { users: ['ci-bot'], repositories: ['**'], actions: ['pull', 'push'] }
      ],
      anonymous: { repositories: ['public/**'], actions: ['pull'] }
    }
  })
  registry = await startRegistry(ctx, join(dir, 'registry'), {
    port: registryPort,
    token: { realm: `${berth.url}/token`, service: 'registry.test', issuer: 'berth-test', rootcertbundle: signing.cert }
  })
  certs = await certDir(dir)
  image = await ociLayout(join(dir, 'image'), 'v1', [200_000])
})


/** A token from berth's GET /token, as a client gets one. */
async function tokenFor (auth: string | null, scopes: string[]): Promise<{ status: number, token?: string, body: string }> {
  const q = new URLSearchParams({ service: 'registry.test' })
  for (const s of scopes) q.append('scope', s)
  const r = await request(berth, `/token?${q}`, { headers: auth === null ? {} : { authorization: auth } })
  const body = r.body.toString()
  return { status: r.status, body, ...(r.status === 200 ? { token: (JSON.parse(body) as { token: string }).token } : {}) }
}

/** A request straight to the registry (the path around berth), with a token or without. */
function direct (method: string, path: string, token?: string): Promise<{ status: number, challenge: string }> {
  return new Promise((resolve, reject) => {
    https.request(`${registry.url}${path}`, { method, ca: berth.ca, agent: false, headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), 'content-length': 0 } }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, challenge: String(res.headers['www-authenticate'] ?? '') })
    }).on('error', reject).end()
  })
}

const copy = (creds: string | null, from: string, to: string) => skopeo(['copy', '--dest-cert-dir', certs, ...(creds === null ? [] : ['--dest-creds', creds]), from, to])
const inspect = (creds: string | null, ref: string) => skopeo(['inspect', '--cert-dir', certs, ...(creds === null ? ['--no-creds'] : ['--creds', creds]), ref])
const at = (repo: string) => `docker://127.0.0.1:${berth.port}/${repo}`

test('skopeo pushes and pulls through berth; the registry alone refuses what a token does not grant', async () => {
  const push = await copy('alice:alice-pw', `oci:${image.dir}:v1`, `${at('team/app')}:v1`)
  assert.equal(push.code, 0, push.stderr)
  const pulled = await inspect('reader:reader-pw', `${at('team/app')}:v1`)
  assert.equal(pulled.code, 0, pulled.stderr)
  assert.equal((JSON.parse(pulled.stdout) as { Digest: string }).Digest, image.manifestDigest)

  // A pull-only user's push fails, and the token berth gives them for it grants pull alone...
  const refused = await copy('reader:reader-pw', `oci:${image.dir}:v1`, `${at('team/app')}:v2`)
  assert.notEqual(refused.code, 0)
  assert.match(refused.stderr, /unauthorized|denied|authentication required/i)
  const readerToken = await tokenFor(basic('reader'), ['repository:team/app:pull,push'])
  assert.deepEqual(decodeJwt(readerToken.token as string).access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }])
  // ...which the registry itself checks: taken straight to it, the token reads but does not write.
  assert.equal((await direct('GET', '/v2/team/app/tags/list', readerToken.token)).status, 200)
  const upload = await direct('POST', '/v2/team/app/blobs/uploads/', readerToken.token)
  assert.equal(upload.status, 401)
  // The registry lists the actions in its map's order (Go's, which varies): compare them as a set.
  const asked = /scope="repository:team\/app:([a-z,]+)"/.exec(upload.challenge)
  assert.ok(asked, upload.challenge)
  assert.deepEqual(asked[1].split(',').sort(), ['pull', 'push'])

  // The registry reached directly without a token: 401, pointing at berth.
  const bare = await direct('GET', '/v2/')
  assert.equal(bare.status, 401)
  assert.match(bare.challenge, new RegExp(`^Bearer realm="${berth.url}/token"`))

  // A token for team/app does not open team/other, at berth or at the registry.
  const aliceApp = await tokenFor(basic('alice'), ['repository:team/app:pull'])
  assert.equal((await direct('GET', '/v2/team/app/tags/list', aliceApp.token)).status, 200)
  assert.equal((await direct('GET', '/v2/team/other/tags/list', aliceApp.token)).status, 401)
  const viaBerth = await request(berth, '/v2/team/other/tags/list', { headers: { authorization: `Bearer ${aliceApp.token as string}` } })
  assert.equal(viaBerth.status, 401)
  assert.match(String(viaBerth.headers['www-authenticate']), /scope="repository:team\/other:pull",error="insufficient_scope"/)
})

test('Basic at the edge gets the Bearer challenge; expired and forged tokens are refused by berth and the registry', async () => {
  const basicAtEdge = await request(berth, '/v2/team/app/tags/list', { headers: { authorization: basic('alice') } })
  assert.equal(basicAtEdge.status, 401)
  assert.equal(basicAtEdge.headers['www-authenticate'], `Bearer realm="${berth.url}/token",service="registry.test",scope="repository:team/app:pull"`)

  const good = await tokenFor(basic('alice'), ['repository:team/app:pull'])
  const header = JSON.parse(Buffer.from((good.token as string).split('.')[0], 'base64url').toString()) as { alg: string, kid: string, x5c: string[] }
  assert.equal(header.alg, 'ES256')
  assert.match(header.kid, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/, 'kid: a libtrust fingerprint')
  assert.equal(header.x5c.length, 1)
  const sign = async (key: Parameters<SignJWT['sign']>[0], exp: number) => await new SignJWT({ access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] })
    .setProtectedHeader(header).setIssuer('berth-test').setSubject('alice').setAudience('registry.test')
    .setIssuedAt(exp - 300).setNotBefore(exp - 300).setExpirationTime(exp).sign(key)
  const now = Math.floor(Date.now() / 1000)
  // Positive control: the same claims, in date, signed with berth's key, pass both.
  const fresh = await sign(createPrivateKey(readFileSync(tokenKey)), now + 60)
  assert.equal((await direct('GET', '/v2/team/app/tags/list', fresh)).status, 200)
  assert.equal((await request(berth, '/v2/team/app/tags/list', { headers: { authorization: `Bearer ${fresh}` } })).status, 200)
  // Only the kid (no x5c): the registry finds the key by its libtrust fingerprint in the rootcertbundle.
  const kidOnly = await new SignJWT({ access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] })
    .setProtectedHeader({ alg: header.alg, typ: 'JWT', kid: header.kid }).setIssuer('berth-test').setSubject('alice').setAudience('registry.test')
    .setIssuedAt(now).setNotBefore(now).setExpirationTime(now + 60).sign(createPrivateKey(readFileSync(tokenKey)))
  assert.equal((await direct('GET', '/v2/team/app/tags/list', kidOnly)).status, 200)
  // Expired two minutes ago (past the registry's 60 s leeway), and forged with another key.
  const expired = await sign(createPrivateKey(readFileSync(tokenKey)), now - 120)
  const forged = await sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, now + 60)
  for (const bad of [expired, forged]) {
    assert.equal((await direct('GET', '/v2/team/app/tags/list', bad)).status, 401)
    const r = await request(berth, '/v2/team/app/tags/list', { headers: { authorization: `Bearer ${bad}` } })
    assert.equal(r.status, 401)
    assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/)
  }
})

test('anonymous rules give anonymous tokens; POST /token (OAuth2 password grant) works; wrong passwords do not', async () => {
  const push = await copy('alice:alice-pw', `oci:${image.dir}:v1`, `${at('public/base')}:v1`)
  assert.equal(push.code, 0, push.stderr)
  const anon = await inspect(null, `${at('public/base')}:v1`)
  assert.equal(anon.code, 0, anon.stderr)
  assert.equal((await tokenFor(null, ['repository:team/app:pull'])).status, 401, 'nothing to grant anonymously: credentials asked for')
  assert.equal((await inspect(null, `${at('team/app')}:v1`)).code !== 0, true)

  const form = (fields: Record<string, string>) => request(berth, '/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() })
  const ok = await form({ grant_type: 'password', username: 'alice', password: 'alice-pw', service: 'registry.test', scope: 'repository:team/app:pull registry:catalog:*', client_id: 'docker' })
  assert.equal(ok.status, 200, ok.body.toString())
  const answer = JSON.parse(ok.body.toString()) as { access_token: string, scope: string, expires_in: number }
  assert.equal(answer.scope, 'repository:team/app:pull registry:catalog:*')
  assert.equal(answer.expires_in, 300)
  assert.equal((await direct('GET', '/v2/_catalog', answer.access_token)).status, 200)
  assert.equal((await form({ grant_type: 'password', username: 'alice', password: 'wrong', service: 'registry.test' })).status, 401)
  assert.equal((await form({ grant_type: 'refresh_token', refresh_token: 'x', service: 'registry.test' })).status, 400)
  assert.equal((await tokenFor(basic('alice', 'wrong'), [])).status, 401)
})

test('an access key pushes within its scope only, is named in the access log, and stops working once revoked', async () => {
  const { key, secret } = await createKey(keysFile, { user: 'ci-bot', repositories: ['team/**'], actions: ['pull', 'push'], expiresIn: 86_400_000 })
  await sleep(1500) // the keys file is polled
  const push = await copy(`ci-bot:${secret}`, `oci:${image.dir}:v1`, `${at('team/ci')}:v1`)
  assert.equal(push.code, 0, push.stderr)
  // The rules let ci-bot push anywhere; the key does not.
  const outside = await tokenFor(basic('ci-bot', secret), ['repository:other/ci:pull,push'])
  assert.deepEqual(decodeJwt(outside.token as string).access, [])
  assert.match(berth.accessLog(), new RegExp(`ci-bot .*"PUT /v2/team/ci/manifests/v1 HTTP/1\\.1" 201 .* key=${key.id}`))

  const before = await tokenFor(basic('ci-bot', secret), ['repository:team/ci:pull'])
  await revokeKey(keysFile, key.id)
  await sleep(1500)
  assert.equal((await tokenFor(basic('ci-bot', secret), ['repository:team/ci:pull'])).status, 401)
  // A token issued for the key before is refused at the edge too (the registry alone would honour it until it expires).
  assert.equal((await request(berth, '/v2/team/ci/tags/list', { headers: { authorization: `Bearer ${before.token as string}` } })).status, 401)
})
