// The README's quick start as a new user runs it: `npm start`'s command on the shipped config, with no
// registry running, starts a development registry; the README's own skopeo commands push the example
// image through berth and pull it back. Without docker-registry berth says how to get one, and serves.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'
import https from 'node:https'
import { connect } from 'node:net'
import { tempDir, spawnBerth, startUpstream, waitFor } from '../helper.js'
import { freePort, requireTool } from './fixtures.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** config/berth.yaml as shipped, in `dir`, on a free port, its registry expected at `registryPort`. */
function shippedConfig (dir: string, registryPort: number): string {
  mkdirSync(join(dir, 'config'), { recursive: true })
  const file = join(dir, 'config', 'berth.yaml')
  writeFileSync(file, readFileSync(join(ROOT, 'config', 'berth.yaml'), 'utf8')
    .replace(/port: 8443/, 'port: 0').replace('port: 9090', 'port: 0').replace('host: 0.0.0.0', 'host: 127.0.0.1')
    .replace('http://127.0.0.1:5000', `http://127.0.0.1:${registryPort}`))
  return file
}

function sh (command: string): Promise<{ code: number | null, out: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { out += c })
    child.on('exit', (code) => resolve({ code, out }))
  })
}

test('npm start with no registry running: a development registry starts, and the README\'s push and pull work as written', { timeout: 120_000 }, async (t) => {
  requireTool('docker-registry', 'docker-registry')
  requireTool('skopeo', 'skopeo')
  const dir = tempDir(t)
  const registryPort = await freePort()
  const config = shippedConfig(dir, registryPort)
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string
  const args = start.replace(/^node bin\/berth\.js start /, '').split(' ').map((a) => a === 'config/berth.yaml' ? config : a)
  const berth = await spawnBerth(t, args)
  assert.match(berth.output(), new RegExp(`started a development registry at http://127\\.0\\.0\\.1:${registryPort} \\(docker-registry, storage .*config/data/registry/storage\\)`))
  assert.ok(existsSync(join(dir, 'config', 'data', 'registry', 'config.yml')), 'the config berth wrote for it')

  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 5))
  const commands = quickStart.split('\n').filter((l) => l.startsWith('skopeo copy'))
  assert.equal(commands.length, 2, `a push and a pull in the quick start:\n${quickStart}`)
  const pulled = join(dir, 'pulled')
  for (const command of commands) {
    const run = command.replace(/#.*$/, '')
      .replaceAll('localhost:8443', `localhost:${berth.port}`)
      .replaceAll('config/certs', join(dir, 'config', 'certs'))
      .replace(/oci:hello-pulled/, `oci:${pulled}`)
    const r = await sh(run)
    assert.equal(r.code, 0, `${run}\n${r.out}`)
  }
  const index = (d: string) => (JSON.parse(readFileSync(join(d, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }).manifests[0].digest
  assert.equal(index(pulled), index(join(ROOT, 'examples', 'hello')))

  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
  const stillThere = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: registryPort })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
  assert.equal(stillThere, false, 'the development registry stopped with berth')
})

test('npm start without docker-registry: berth says how to get one and keeps serving; an answering upstream is left alone', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  symlinkSync('/bin/sh', join(bin, 'sh'))
  const registryPort = await freePort()
  const berth = await spawnBerth(t, ['--config', shippedConfig(join(dir, 'a'), registryPort), '--dev'], undefined, { PATH: bin })
  assert.match(berth.output(), /no registry answers at http:\/\/127\.0\.0\.1:\d+\. Install one with `sudo apt-get install docker-registry`.*or run `docker compose up`/)
  await waitFor(() => berth.output().includes('does not answer'), 5000, 'the start-up warning')
  assert.match(berth.output(), /upstream http:\/\/127\.0\.0\.1:\d+ does not answer \(ECONNREFUSED\): berth answers 502 until a server does/)
  const ca = readFileSync(join(dir, 'a', 'config', 'certs', 'ca.crt'))
  const status = await new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: berth.port, path: '/v2/', ca, servername: 'localhost' }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 502, 'serving, with a registry error until a registry is there')

  // something answers at the configured upstream already: berth starts nothing
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  const other = await spawnBerth(t, ['--config', shippedConfig(join(dir, 'b'), up.port), '--dev'])
  await waitFor(() => other.output().includes('berth listening'), 5000)
  assert.doesNotMatch(other.output(), /development registry|no registry answers/)
})
