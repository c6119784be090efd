// What docker-compose.yml and the Dockerfile run, exercised here (no Docker engine on this machine):
// the compiled build without sources, the same command, the same config.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import https from 'node:https'
import { once } from 'node:events'
import { parse } from 'yaml'
import { tempDir, testCerts, startUpstream, waitFor } from './helper.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Compose { services: Record<string, { ports?: string[], volumes?: string[], command?: string[], build?: string, image?: string }> }

function dockerfileCmd (): { entrypoint: string[], cmd: string[] } {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const grab = (k: string) => JSON.parse((new RegExp(`^${k} (\\[.*\\])$`, 'm').exec(text) as RegExpExecArray)[1]) as string[]
  return { entrypoint: grab('ENTRYPOINT'), cmd: grab('CMD') }
}

test('docker-compose.yml: the registry is not published, berth publishes 443 to the port config/docker.yaml listens on', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as Compose
  assert.equal(compose.services.registry.image, 'registry:2')
  assert.equal(compose.services.registry.ports, undefined)
  const berth = compose.services.berth
  assert.equal(berth.build, '.')
  assert.deepEqual(berth.volumes, ['./config:/etc/berth'])
  const docker = parse(readFileSync(join(ROOT, 'config', 'docker.yaml'), 'utf8')) as { listen: { port: number }, upstream: { servers: Array<{ url: string }> } }
  assert.deepEqual(berth.ports, [`443:${docker.listen.port}`])
  assert.equal(new URL(docker.upstream.servers[0].url).hostname, 'registry')
  assert.deepEqual(berth.command, dockerfileCmd().cmd)
  assert.deepEqual(dockerfileCmd().cmd.slice(0, 3), ['start', '--config', '/etc/berth/docker.yaml'])
})

test('the image\'s build (tsc, dist/ only, no sources) runs `berth check` and `berth start` as the image does', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t)
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], { encoding: 'utf8' })
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr)
  mkdirSync(join(dir, 'bin'))
  copyFileSync(join(ROOT, 'bin', 'berth.js'), join(dir, 'bin', 'berth.js'))
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  assert.equal(existsSync(join(dir, 'src', 'cli.ts')), false)
  const { entrypoint } = dockerfileCmd()
  assert.deepEqual(entrypoint, ['node', 'bin/berth.js'])

  // config/docker.yaml as shipped, with its certificates made by `berth certs`.
  const etc = join(dir, 'etc-berth')
  mkdirSync(etc)
  copyFileSync(join(ROOT, 'config', 'docker.yaml'), join(etc, 'docker.yaml'))
  const certs = spawnSync(process.execPath, [join(dir, 'bin', 'berth.js'), 'certs', '--host', 'localhost', '--out', join(etc, 'certs')], { encoding: 'utf8', cwd: dir })
  assert.equal(certs.status, 0, certs.stderr)
  const check = spawnSync(process.execPath, [join(dir, 'bin', 'berth.js'), 'check', '--config', join(etc, 'docker.yaml')], { encoding: 'utf8', cwd: dir })
  assert.equal(check.status, 0, check.stderr)
  assert.equal(check.stdout, `configuration ${join(etc, 'docker.yaml')} is valid\n`)

  // The same file with the upstream and port of this test, started by the compiled CLI.
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  writeFileSync(join(etc, 'docker.yaml'), readFileSync(join(etc, 'docker.yaml'), 'utf8')
    .replace('http://registry:5000', up.url).replace('port: 8443', 'port: 0').replace('host: 0.0.0.0', 'host: 127.0.0.1'))
  const child = spawn(process.execPath, [join(dir, 'bin', 'berth.js'), 'start', '--config', join(etc, 'docker.yaml'), '--init-certs'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { out += c })
  await waitFor(() => out.includes('"berth listening"') || child.exitCode !== null, 20_000, 'compiled berth to listen')
  const line = out.split('\n').find((l) => l.includes('"berth listening"'))
  assert.ok(line, out)
  const port = (JSON.parse(line) as { address: { port: number } }).address.port
  const ca = readFileSync(join(etc, 'certs', 'ca.crt'))
  const status = await new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/v2/', ca, servername: 'localhost', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 200)
  child.kill('SIGTERM')
  assert.deepEqual(await once(child, 'exit'), [0, null])
})
