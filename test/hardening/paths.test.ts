// The path corpus: encoded and odd request targets that must never let a user act on a repository the
// access rules deny. Each gets 400, 403 or 404 exactly as docs/security.md documents, and none reaches the
// upstream. Raw sockets, since clients normalise paths.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import tls from 'node:tls'
import { once } from 'node:events'
import { startBerth, startUpstream, tempDir, basic, type Berth } from '../helper.js'


async function setup (t: Parameters<typeof startBerth>[0]): Promise<{ berth: Berth, seen: string[] }> {
  const seen: string[] = []
  const up = await startUpstream((req, res) => { seen.push(`${req.method} ${req.url}`); req.resume(); req.on('end', () => res.end('{}')) }, { plain: true })
  t.after(() => up.close())
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  writeFileSync(file, execFileSync('htpasswd', ['-nbB', '-C', '4', 'ci-bot', 'ci-bot-pw'], { encoding: 'utf8' }))
  const berth = await startBerth(t, [up.url], { auth: { htpasswd: file, access: [{ users: ['ci-bot'], repositories: ['team-a/**'], actions: ['pull', 'push'] }] } })
  return { berth, seen }
}

/** Sends a raw request line (clients normalise paths, so a socket is needed). */
async function raw (berth: Berth, target: string, user = 'ci-bot'): Promise<number> {
  const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  socket.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${basic(user, `${user}-pw`)}\r\nConnection: close\r\n\r\n`)
  let out = ''
  socket.on('data', (c: Buffer) => { out += c.toString('latin1') })
  await once(socket, 'end')
  socket.destroy()
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0)
}

test('path tricks never reach a repository the rules deny: each gets 400, 403 or 404 as documented', async (t) => {
  const { berth, seen } = await setup(t)
  // ci-bot may only touch team-a/**; every target below aims at secret/app.
  const corpus: Array<[string, number]> = [
    ['/v2/team-a/%2e%2e/secret/app/manifests/v1', 400],
    ['/v2/team-a/../secret/app/manifests/v1', 400],
    ['/v2/team-a/..%2fsecret/app/manifests/v1', 400],
    ['/v2/team-a%2F..%2Fsecret/app/manifests/v1', 400],
    ['/v2/team-a/%252e%252e/secret/app/manifests/v1', 400],
    ['/v2/team-a/./../secret/app/manifests/v1', 400],
    ['/v2/team-a//secret/app/manifests/v1', 400],
    ['/v2//secret/app/manifests/v1', 400],
    ['/v2/team-a\\..\\secret/app/manifests/v1', 400],
    ['/v2/team-a/%c0%ae%c0%ae/secret/app/manifests/v1', 400],
    ['/v2/team-a/x;/../../secret/app/manifests/v1', 400],
    ['/v2/secret/app;team-a/x/manifests/v1', 400],
    ['/v2/Secret/App/manifests/v1', 400],
    ['/v2/secret/app/manifests/v1', 403],
    ['/V2/secret/app/manifests/v1', 404],
    ['/v2/secret/app/manifests/v1?/v2/team-a/app/manifests/v1', 403],
    ['/v2/team-a/app/manifests/v1/../../../../secret/app/manifests/v1', 400],
    ['/v2/team-a/app/manifests/..', 400],
    ['/v2/%2e%2e/v2/secret/app/manifests/v1', 400],
    ['/v2/secret/app', 404],
    ['/', 404],
    ['http://localhost/v2/secret/app/manifests/v1', 400]
  ]
  for (const [target, status] of corpus) {
    assert.equal(await raw(berth, target), status, target)
  }
  assert.deepEqual(seen, [], 'nothing reached the upstream')
  // the same user on an allowed path, as a control
  assert.equal(await raw(berth, '/v2/team-a/app/manifests/v1'), 200)
  assert.deepEqual(seen, ['GET /v2/team-a/app/manifests/v1'])
})
