// berth as the only gate in front of the real registry: every way a request can name a repository is
// checked, a delete reaches the cache, the registry's upload URLs always point at berth, and the catalog
// shows only what the rules allow. One registry and one berth for the whole file.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import https from 'node:https'
import tls from 'node:tls'
import { once } from 'node:events'
import { startBerth, request, registryError, waitFor, sleep, basic, type Berth, type Response } from '../helper.js'
import { startRegistry, sha256, type Registry, fileContext } from './fixtures.js'
import { loadConfig } from '../../src/config/load.js'

const ctx = fileContext()
let dir: string
let registry: Registry
let berth: Berth
const USERS = ['admin', 'alice', 'lister']

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-gate-'))
  ctx.after(() => rmSync(dir, { recursive: true, force: true }))
  registry = await startRegistry(ctx, join(dir, 'registry'))
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, USERS.map((u) => execFileSync('htpasswd', ['-nbB', '-C', '4', u, `${u}-pw`], { encoding: 'utf8' }).trim()).join('\n') + '\n')
  berth = await startBerth(ctx, [registry.url], {
    auth: {
      htpasswd,
      throttle: { failures: 1000 },
      access: [
        { users: ['admin'], repositories: ['**'], actions: ['pull', 'push', 'delete', 'catalog'] },
        { users: ['alice'], repositories: ['team/**'], actions: ['pull', 'push', 'delete'] },
        { users: ['lister'], repositories: ['team/**'], actions: ['pull', 'catalog'] }
      ]
    },
    cache: { dir: join(dir, 'cache'), maxSize: '100m', confirmFor: '1s' }
  })
})


async function as (user: string | null, method: string, path: string, opts: { headers?: Record<string, string | string[]>, body?: Buffer | string } = {}): Promise<Response> {
  const headers: Record<string, string | string[] | number> = { ...(user === null ? {} : { authorization: basic(user) }), ...opts.headers }
  if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body)
  else if (method === 'POST' || method === 'PUT') headers['content-length'] = 0
  return await request(berth, path, { method, headers: headers as Record<string, string>, body: opts.body })
}

/** A monolithic blob upload through berth: POST, then PUT with the digest. */
async function pushBlob (user: string, repository: string, blob: Buffer): Promise<string> {
  const digest = `sha256:${sha256(blob)}`
  const start = await as(user, 'POST', `/v2/${repository}/blobs/uploads/`)
  assert.equal(start.status, 202, start.body.toString())
  const location = new URL(start.headers.location ?? '', berth.url)
  location.searchParams.set('digest', digest)
  const put = await as(user, 'PUT', location.pathname + location.search, { headers: { 'content-type': 'application/octet-stream' }, body: blob })
  assert.equal(put.status, 201, put.body.toString())
  return digest
}

/** A request straight to the registry, bypassing berth (what an operator or garbage collection does). */
function direct (method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.request(`${registry.url}${path}`, { method, ca: berth.ca, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      .on('error', reject).end()
  })
}

/** Sends `raw` on a new TLS connection to berth; resolves with the whole answer once it ended. */
async function raw (text: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  let answer = ''
  socket.on('data', (c: Buffer) => { answer += c.toString('latin1') })
  socket.on('error', () => {})
  socket.write(text)
  await Promise.race([once(socket, 'close'), sleep(3000)])
  socket.destroy()
  return answer
}

test('a mount source named anywhere the registry reads it passes the access rules: form bodies are refused, every query value is checked', async () => {
  const secret = await pushBlob('admin', 'private/secret', randomBytes(2000))
  const shared = await pushBlob('admin', 'team/y', randomBytes(2000))
  const uploads = '/v2/team/x/blobs/uploads/'
  const form = (type: string, body: string, query = '') => as('alice', 'POST', uploads + query, { headers: { 'content-type': type }, body })
  const refused: Array<[string, Promise<Response>]> = [
    ['urlencoded body', form('application/x-www-form-urlencoded', `mount=${secret}&from=private%2Fsecret`)],
    ['another spelling of the type', form('Application/X-WWW-Form-URLEncoded ; charset=utf-8', `mount=${secret}&from=private/secret`)],
    ['multipart body', form('multipart/form-data; boundary=XX', `--XX\r\nContent-Disposition: form-data; name="mount"\r\n\r\n${secret}\r\n--XX\r\nContent-Disposition: form-data; name="from"\r\n\r\nprivate/secret\r\n--XX--\r\n`)],
    ['allowed in the query, forbidden in the body', form('application/x-www-form-urlencoded', 'from=private%2Fsecret', `?mount=${secret}&from=team/y`)],
    ['repeated keys in the body', form('application/x-www-form-urlencoded', `from=team%2Fy&from=private%2Fsecret&mount=${secret}`)],
    ['two Content-Type headers', as('alice', 'POST', uploads, { headers: { 'content-type': ['application/octet-stream', 'application/x-www-form-urlencoded'] }, body: `mount=${secret}&from=private%2Fsecret` })]
  ]
  for (const [name, answer] of refused) {
    const res = await answer
    assert.equal(res.status, 400, `${name}: ${res.status} ${res.body.toString()}`)
    assert.equal(registryError(res.body).code, 'UNSUPPORTED', name)
  }
  // Go lower-cases U+0130 to "i": as UTF-8 bytes on the wire, this is a form type to the registry.
  const body = `mount=${secret}&from=private%2Fsecret`
  const unicode = await raw([`POST ${uploads} HTTP/1.1`, 'Host: localhost', `Authorization: ${basic('alice')}`,
    `Content-Type: ${Buffer.from('appl\u0130cation/x-www-form-urlencoded').toString('latin1')}`, `Content-Length: ${body.length}`, 'Connection: close', '', body].join('\r\n'))
  assert.match(unicode, /^HTTP\/1\.1 400 /)
  for (const query of [`?mount=${secret}&from=private/secret`, `?mount=${secret}&from=team/y&from=private/secret`, `?from=private/secret&mount=${secret}`, `?mount=${secret}&from=private%2Fsecret`]) {
    assert.equal((await as('alice', 'POST', uploads + query)).status, 403, query)
  }
  // what the rules allow still works
  const mounted = await as('alice', 'POST', `${uploads}?mount=${shared}&from=team/y`)
  assert.equal(mounted.status, 201, mounted.body.toString())
  assert.equal((await as('alice', 'GET', `/v2/team/x/blobs/${shared}`)).status, 200)
  // and the private layer was never linked into team/x
  assert.equal((await as('alice', 'GET', `/v2/team/x/blobs/${secret}`)).status, 404)
  assert.equal((await as('admin', 'HEAD', `/v2/team/x/blobs/${secret}`)).status, 404)
})

test('a delete through berth reaches the cache at once; a delete on the registry itself shows once the confirmation expires', async () => {
  const cached = async (digest: string, repository: string) => {
    const before = berth.app.blobCache?.stats.hits ?? 0
    const res = await as('alice', 'GET', `/v2/${repository}/blobs/${digest}`)
    return { status: res.status, hit: (berth.app.blobCache?.stats.hits ?? 0) > before }
  }
  const blob = randomBytes(50_000)
  const digest = await pushBlob('alice', 'team/c', blob)
  assert.deepEqual(await cached(digest, 'team/c'), { status: 200, hit: false })
  await waitFor(() => berth.app.blobCache?.sizeOf(digest) !== undefined, 5000, 'the blob cached')
  assert.deepEqual(await cached(digest, 'team/c'), { status: 200, hit: true }, 'served from the cache')

  assert.equal((await as('alice', 'DELETE', `/v2/team/c/blobs/${digest}`)).status, 202)
  assert.deepEqual(await cached(digest, 'team/c'), { status: 404, hit: false }, 'GET after a delete through berth')
  assert.equal((await as('alice', 'HEAD', `/v2/team/c/blobs/${digest}`)).status, 404, 'HEAD after a delete through berth')

  // The same blob in another repository, deleted behind berth's back: trusted for confirmFor (1 s), then not.
  await pushBlob('alice', 'team/d', blob)
  assert.deepEqual(await cached(digest, 'team/d'), { status: 200, hit: true }, 'confirmed by the download, served from the copy')
  assert.equal(await direct('DELETE', `/v2/team/d/blobs/${digest}`), 202)
  await sleep(1100)
  assert.deepEqual(await cached(digest, 'team/d'), { status: 404, hit: false }, 'after confirmFor the registry is asked again')
  assert.equal((await as('alice', 'HEAD', `/v2/team/d/blobs/${digest}`)).status, 404)

  // A manifest deleted through berth: what berth remembers of the repository goes too, so that the blobs
  // garbage collection then removes are not served from the copy.
  const layer = randomBytes(30_000)
  const layerDigest = await pushBlob('alice', 'team/m', layer)
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  const configDigest = await pushBlob('alice', 'team/m', config)
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }]
  })
  const put = await as('alice', 'PUT', '/v2/team/m/manifests/v1', { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest })
  assert.equal(put.status, 201, put.body.toString())
  assert.equal((await cached(layerDigest, 'team/m')).status, 200)
  await waitFor(() => berth.app.blobCache?.sizeOf(layerDigest) !== undefined, 5000, 'the layer cached')
  assert.deepEqual(await cached(layerDigest, 'team/m'), { status: 200, hit: true })
  assert.equal((await as('alice', 'DELETE', `/v2/team/m/manifests/${put.headers['docker-content-digest'] as string}`)).status, 202)
  assert.equal(await direct('DELETE', `/v2/team/m/blobs/${layerDigest}`), 202) // what garbage collection does
  assert.deepEqual(await cached(layerDigest, 'team/m'), { status: 404, hit: false }, 'no copy served after the manifest went')
})

test('the registry\'s upload URLs point at berth: HTTP/1.0 without Host, Host named in Connection, forged forwarding headers', async () => {
  const origin = `https://localhost:${berth.port}`
  const location = (answer: string) => /\r\nlocation: ([^\r]*)/i.exec(answer)?.[1] ?? `no Location in ${JSON.stringify(answer.slice(0, 200))}`
  const start = (lines: string[]) => raw(['POST /v2/team/l/blobs/uploads/ ' + lines[0], `Authorization: ${basic('alice')}`, 'Content-Length: 0', ...lines.slice(1), '', ''].join('\r\n'))

  const http10 = await start(['HTTP/1.0'])
  assert.match(http10, /^HTTP\/1\.1 202 /)
  assert.ok(location(http10).startsWith(`https://127.0.0.1:${berth.port}/v2/team/l/blobs/uploads/`), location(http10))
  assert.ok(!location(http10).includes(`:${registry.port}`))

  const named = await start(['HTTP/1.1', `Host: localhost:${berth.port}`, 'Connection: close, Host'])
  assert.ok(location(named).startsWith(`${origin}/v2/team/l/blobs/uploads/`), location(named))

  const forged = await start(['HTTP/1.1', `Host: localhost:${berth.port}`, 'X-Forwarded-Host: evil.example', 'X-Forwarded-Proto: http', 'Forwarded: host=evil.example;proto=http', 'Connection: close'])
  assert.ok(location(forged).startsWith(`${origin}/v2/team/l/blobs/uploads/`), location(forged))

  // Behind a trusted load balancer its X-Forwarded-Host and -Proto are what the registry builds URLs from.
  const file = join(berth.dir, 'berth.yaml')
  const yaml = readFileSync(file, 'utf8')
  writeFileSync(file, `${yaml}\ntrustedProxies: [127.0.0.1]\n`)
  await berth.app.reload(await loadConfig(file))
  try {
    const balanced = await start(['HTTP/1.1', `Host: localhost:${berth.port}`, 'X-Forwarded-Host: registry.example.com', 'X-Forwarded-Proto: https', 'X-Forwarded-For: 203.0.113.5', 'Connection: close'])
    assert.ok(location(balanced).startsWith('https://registry.example.com/v2/team/l/blobs/uploads/'), location(balanced))
    await waitFor(() => /^203\.0\.113\.5 - alice /m.test(berth.accessLog()), 3000, 'the forwarded client in the access log')
  } finally {
    writeFileSync(file, yaml)
    await berth.app.reload(await loadConfig(file))
  }
})

test('the catalog lists only repositories the rules let the user see, paginated across registry pages', async () => {
  for (const name of ['aaa/0', 'private/p0', 'private/p1', 'private/p2', 'private/p3', 'private/p4', 'team/t0', 'team/t1', 'team/t2', 'zz/z0']) {
    await pushBlob('admin', name, Buffer.from(name))
  }
  const list = async (user: string, query: string) => {
    const res = await as(user, 'GET', `/v2/_catalog${query}`)
    assert.equal(res.status, 200, res.body.toString())
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
    const next = /^<(\/v2\/_catalog\?[^>]*)>; rel="next"$/.exec(String(res.headers.link ?? ''))?.[1]
    return { names: (JSON.parse(res.body.toString()) as { repositories: string[] }).repositories, next: next?.slice('/v2/_catalog'.length) }
  }
  const all: string[] = []
  let query: string | undefined = '?n=2'
  for (let pages = 0; query !== undefined && pages < 10; pages++) {
    const page: { names: string[], next?: string } = await list('lister', query)
    assert.ok(page.names.length === 2 || page.next === undefined, `a short page only at the end: ${page.names.join()}`)
    all.push(...page.names)
    query = page.next
  }
  // admin may list and pull everything: the whole catalog, from which lister must see team/** only
  const admin = await list('admin', '?n=100')
  assert.ok(admin.names.includes('private/p0') && admin.names.includes('aaa/0') && admin.names.includes('zz/z0'))
  const team = admin.names.filter((name) => name.startsWith('team/'))
  assert.ok(team.includes('team/t0') && team.includes('team/t2'))
  assert.deepEqual(all, team)
  assert.deepEqual((await list('lister', '')).names, team)
  assert.equal((await as('alice', 'GET', '/v2/_catalog')).status, 403)
})
