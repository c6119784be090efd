// What docker-compose.yml and the Dockerfile run, exercised here (no Docker engine on this machine):
// the compiled build without sources, the same command, the same config.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import http from 'node:http'
import https from 'node:https'
import { once } from 'node:events'
import { parse } from 'yaml'
import { tempDir, startUpstream, waitFor, imageBuild, testCerts, htpasswdFile, basic, spawnBerth, imageNodeOptions } from './helper.js'
import { fileContext } from './e2e/fixtures.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const holder = fileContext()
let built: string | undefined
/** The image's build, made once for the tests of this file that run it. */
const image = (): string => { built ??= imageBuild(holder); return built }

interface Compose { services: Record<string, { ports?: string[], volumes?: string[], command?: string[], build?: string, image?: string, healthcheck?: { test: string[] }, depends_on?: Record<string, { condition: string }> }> }

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

test('the image\'s build (tsc and the bundle, no sources) runs `berth check` and `berth start` as the image does', { timeout: 120_000 }, async (t) => {
  const dir = image()
  assert.equal((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.build, 'tsc -p tsconfig.build.json && node scripts/bundle.mjs')
  assert.equal(existsSync(join(dir, 'src', 'cli.ts')), false)
  const { entrypoint } = dockerfileCmd()
  const nodeOptions = imageNodeOptions()
  assert.deepEqual(entrypoint, ['node', 'bin/berth.js'])
  assert.equal(nodeOptions, '--max-semi-space-size=8')

  // config/docker.yaml as shipped, with its certificates made by `berth certs`.
  const etc = join(dir, 'etc-berth')
  mkdirSync(etc)
  copyFileSync(join(ROOT, 'config', 'docker.yaml'), join(etc, 'docker.yaml'))
  const certs = spawnSync(process.execPath, [join(dir, 'bin', 'berth.js'), 'certs', '--host', 'localhost', '--out', join(etc, 'certs')], { encoding: 'utf8', cwd: dir })
  assert.equal(certs.status, 0, certs.stderr)
  const check = spawnSync(process.execPath, [join(dir, 'bin', 'berth.js'), 'check', '--config', join(etc, 'docker.yaml')], { encoding: 'utf8', cwd: dir })
  assert.equal(check.status, 0, check.stderr)
  assert.equal(check.stdout, `configuration ${join(etc, 'docker.yaml')} is valid\n`)

  // The same file with the upstream and port of this test, started by the compiled CLI, with two workers
  // (`workers: auto` on two cores): each worker must load the TypeScript plugin from the compiled build.
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  // and a TypeScript plugin, as a user would mount one next to the config
  mkdirSync(join(etc, 'plugins'))
  copyFileSync(join(ROOT, 'plugins', 'examples', 'block-old-docker.ts'), join(etc, 'plugins', 'block-old-docker.ts'))
  // and one with a route schema: Fastify's compilers, which berth requires when first needed, from the bundle
  writeFileSync(join(etc, 'plugins', 'schema.mjs'), `export default async function (fastify) {
  fastify.get('/plugin/echo', { schema: { headers: { type: 'object', required: ['X-Team'] }, querystring: { type: 'object', properties: { n: { type: 'integer' } } } } },
    async (request) => ({ n: request.query.n }))
}\n`)
  writeFileSync(join(etc, 'docker.yaml'), readFileSync(join(etc, 'docker.yaml'), 'utf8')
    .replace('http://registry:5000', up.url).replace(/^workers: .*$/m, 'workers: 2').replace('port: 8443', 'port: 0').replace('port: 9090', 'port: 0').replace('host: 0.0.0.0', 'host: 127.0.0.1') +
    'plugins:\n  - { path: plugins/block-old-docker.ts }\n  - { path: plugins/schema.mjs }\n')
  const { child, port } = await spawnBerth(t, ['--config', join(etc, 'docker.yaml'), '--init-certs'], join(dir, 'bin', 'berth.js'), { NODE_OPTIONS: nodeOptions })
  const ca = readFileSync(join(etc, 'certs', 'ca.crt'))
  const get = (agent: string, path = '/v2/', headers = {}) => new Promise<{ status: number, body: string }>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false, headers: { 'user-agent': agent, ...headers } }, (res) => {
      let body = ''
      res.on('data', (c) => { body += c }).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
  assert.equal((await get('docker/24.0.7')).status, 200)
  assert.equal((await get('docker/1.5.0')).status, 404, 'the TypeScript plugin runs in the compiled build too')
  assert.deepEqual(await get('curl', '/plugin/echo?n=3', { 'x-team': 'ops' }), { status: 200, body: '{"n":3}' })
  assert.equal((await get('curl', '/plugin/echo?n=x', { 'x-team': 'ops' })).status, 400)
  assert.equal((await get('curl', '/plugin/echo?n=3')).status, 400, 'the header schema')
  child.kill('SIGTERM')
  assert.deepEqual(await once(child, 'exit'), [0, null])
})

test('`berth start` holds back V8\'s optimizing compiler and young generation until its first client connection, then gives both back; the image caps the young generation', { timeout: 90_000 }, async (t) => {
  const bin = join(image(), 'bin', 'berth.js')
  const c = await testCerts()
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  const dir = tempDir(t)
  const htpasswd = htpasswdFile(t, ['ci'])
  const config = join(dir, 'berth.yaml')
  writeFileSync(config, [
    'listen: { host: 127.0.0.1, port: 0 }', `tls: { cert: ${c.cert}, key: ${c.key} }`, `auth: { htpasswd: ${htpasswd} }`,
    `upstream: { servers: [ { url: "${up.url}" } ] }`, 'admin: { host: 127.0.0.1, port: 0 }', `log: { access: ${join(dir, 'access.log')}, error: "-" }`
  ].join('\n'))
  const start = async (v8Flag: string, nodeOptions: string) => {
    const { child, port, output } = await spawnBerth(t, ['--config', config], bin, { NODE_OPTIONS: nodeOptions }, [v8Flag])
    const admin = Number(/admin listener at http:\/\/127\.0\.0\.1:(\d+)/.exec(output())?.[1])
    return { pid: child.pid as number, port, admin, output }
  }
  // As the image starts it (its NODE_OPTIONS; the V8 flag only traces what V8 optimizes), and as an
  // operator who gives node a flag of its own for the optimizing compiler (that one berth leaves alone)
  // and no NODE_OPTIONS.
  const lean = await start('--trace-opt', imageNodeOptions())
  const given = await start('--turbofan', '')
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const fileMB = (pid: number) => Number(/^RssFile:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024
  const newSpaceMB = async (admin: number) => {
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text()
    return Number(/^berth_nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)$/m.exec(text)?.[1]) / 1048576
  }
  // Running the optimizing compiler once brings some 3.4 MB of the node binary's code into memory.
  t.diagnostic(`node's pages in memory after start: ${fileMB(lean.pid).toFixed(1)} MB lean, ${fileMB(given.pid).toFixed(1)} MB with --turbofan`)
  assert.ok(fileMB(lean.pid) + 2 < fileMB(given.pid), 'the optimizing compiler did not run while berth started')
  assert.doesNotMatch(lean.output(), /completed optimizing/)
  // The young generation as V8 starts it, 1 MB a half (Node 22 and later keep growing it: V8 raises the
  // factor berth sets to its minimum of 2).
  const node20 = Number(process.versions.node.split('.')[0]) < 22
  if (node20) assert.ok(await newSpaceMB(lean.admin) <= 2, `young generation ${await newSpaceMB(lean.admin)} MB after start`)
  // The metrics scrapes above are no clients. Now clients, the same load on both: V8 optimizes what they
  // make hot, and the young generation grows again, up to the image's cap of 8 MB a half in the one
  // started as the image starts it, and past it in the other.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: readFileSync(c.caCert) })
  t.after(() => agent.destroy())
  const get = (port: number) => new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/v2/', servername: 'localhost', agent, headers: { authorization: basic('ci') } }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0))
    }).on('error', reject)
  })
  for (const berth of [lean, given]) {
    const codes = new Set<number>()
    for (let round = 0; round < 80; round++) for (const code of await Promise.all(Array.from({ length: 100 }, () => get(berth.port)))) codes.add(code)
    assert.deepEqual([...codes], [200])
  }
  await waitFor(() => /completed optimizing/.test(lean.output()), 10_000, 'V8 to optimize what the requests made hot')
  const young = { lean: await newSpaceMB(lean.admin), given: await newSpaceMB(given.admin) }
  t.diagnostic(`young generation after the load: ${young.lean} MB as the image starts berth, ${young.given} MB without its NODE_OPTIONS`)
  if (node20) assert.ok(young.lean > 2, `young generation ${young.lean} MB after load`)
  assert.ok(young.lean <= 16, `young generation ${young.lean} MB after load, as the image starts berth`)
  assert.ok(young.given > 16, `young generation ${young.given} MB after load, without the image's NODE_OPTIONS`)
})

test('docker-compose.yml has healthchecks: the registry\'s, and berth\'s on the admin listener config/docker.yaml opens', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as Compose
  const docker = parse(readFileSync(join(ROOT, 'config', 'docker.yaml'), 'utf8')) as { admin: { host: string, port: number } }
  assert.ok(compose.services.registry.healthcheck)
  const test = compose.services.berth.healthcheck?.test.join(' ') ?? ''
  assert.ok(test.includes(`http://${docker.admin.host}:${docker.admin.port}/readyz`), test)
  assert.deepEqual(compose.services.berth.depends_on, { registry: { condition: 'service_healthy' } })
})

test('deploy/kubernetes parses, and every name, key, port, probe and path it references exists', async () => {
  const { parseConfig } = await import('../src/config/load.js')
  const dir = join(ROOT, 'deploy', 'kubernetes')
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] }
  type Doc = { kind: string, metadata: { name: string }, data?: Record<string, string>, stringData?: Record<string, string>, spec?: any } // eslint-disable-line @typescript-eslint/no-explicit-any
  const docs: Doc[] = kustomization.resources.map((f) => parse(readFileSync(join(dir, f), 'utf8')) as Doc)
  const byName = (k: string, name: string) => docs.find((d) => d.kind === k && d.metadata.name === name) as Doc
  const configMap = byName('ConfigMap', 'berth-config')
  const secret = byName('Secret', 'berth-files')
  const deployment = byName('Deployment', 'berth')
  const service = byName('Service', 'berth')
  const config = parseConfig(configMap.data?.['berth.yaml'] ?? '', '/etc/berth/berth.yaml')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  assert.equal(deployment.spec.replicas, 2)
  assert.deepEqual(container.args, ['start', '--config', '/etc/berth/berth.yaml'])
  const ports = Object.fromEntries(container.ports.map((p: { name: string, containerPort: number }) => [p.name, p.containerPort]))
  assert.equal(ports.https, config.listen.port)
  assert.equal(ports.admin, config.admin?.port)
  assert.deepEqual([container.readinessProbe.httpGet.path, container.readinessProbe.httpGet.port], ['/readyz', 'admin'])
  assert.deepEqual([container.livenessProbe.httpGet.path, container.livenessProbe.httpGet.port], ['/healthz', 'admin'])
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > config.shutdown.drainTimeout)
  assert.equal(service.spec.ports[0].targetPort, 'https')
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels)
  const volumes = Object.fromEntries(pod.volumes.map((v: { name: string, configMap?: { name: string }, secret?: { secretName: string } }) => [v.name, v]))
  assert.equal(volumes.config.configMap.name, configMap.metadata.name)
  assert.equal(volumes.files.secret.secretName, secret.metadata.name)
  const mounted = new Set<string>()
  for (const m of container.volumeMounts as Array<{ name: string, mountPath: string, subPath: string }>) {
    if (m.name !== 'cache') {
      const source = m.name === 'config' ? configMap.data : secret.stringData
      assert.ok(source && m.subPath in source, `${m.name} has ${m.subPath}`)
    }
    mounted.add(m.mountPath)
  }
  for (const path of [config.tls?.cert, config.tls?.key, config.auth?.htpasswd, config.cluster?.placement?.secretFile, config.cache?.dir]) assert.ok(mounted.has(path as string), `${path} is mounted`)
  // The replicas' shared store and their peers: Redis where the config says, the internal port by name.
  const redis = byName('Service', 'berth-redis')
  assert.equal(config.cluster?.redis.url, `redis://${redis.metadata.name}:${redis.spec.ports[0].port}`)
  assert.deepEqual(redis.spec.selector, byName('Deployment', 'berth-redis').spec.selector.matchLabels)
  assert.equal(ports.internal, config.cluster?.placement?.listen.port)
  const peers = byName('Service', 'berth-peers')
  assert.equal(peers.spec.clusterIP, 'None')
  assert.equal(peers.spec.ports[0].targetPort, 'internal')
})

test('npm test sets up its own tools: one script, run by pretest, which CI reaches through npm test; without root it names the exact command', (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.equal(pkg.scripts.pretest, 'bash scripts/test-tools.sh')
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'))
  assert.deepEqual(ci.slice(-2), ['npm ci', 'npm test'], '.ci/run ends with the README\'s test command')
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  assert.match(readme, /^npm ci && npm test +#/m)

  // A machine with none of the tools, not root, no sudo: the script fails and prints the command.
  const dir = tempDir(t)
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  for (const tool of ['bash', 'sh']) symlinkSync(spawnSync('sh', ['-c', `command -v ${tool}`]).stdout.toString().trim(), join(bin, tool))
  writeFileSync(join(bin, 'id'), '#!/bin/sh\necho 1000\n', { mode: 0o755, flag: 'wx' }) // a user, not root
  writeFileSync(join(bin, 'apt-get'), '#!/bin/sh\nexit 99\n', { mode: 0o755 })
  const r = spawnSync(join(bin, 'bash'), [join(ROOT, 'scripts', 'test-tools.sh')], { env: { PATH: bin }, encoding: 'utf8' })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /install them with:\n {2}sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry skopeo apache2-utils nginx-light curl testssl\.sh pebble caddy haproxy( slapd)? ldap-utils openssl redis-server'/)

  // Everything there: nothing to do, nothing printed.
  const ok = spawnSync('bash', [join(ROOT, 'scripts', 'test-tools.sh')], { encoding: 'utf8' })
  assert.equal(ok.status, 0, ok.stderr)
  assert.equal(ok.stderr, '')
})

test('npm pack, then npm install -g of the tarball: berth on PATH runs from the compiled build, without tsx; the systemd unit verifies against it', { timeout: 300_000 }, async (t) => {
  // Packed from a copy, so that its build (prepack) never races another test's use of dist/.
  const dir = tempDir(t)
  const src = join(dir, 'src-copy')
  for (const entry of ['bin', 'src', 'plugins', 'scripts', 'config', 'deploy', 'docs', 'README.md', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    cpSync(join(ROOT, entry), join(src, entry), { recursive: true, filter: (p) => !p.includes(`${join('config', 'certs')}`) && !p.includes(`${join('config', 'data')}`) })
  }
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'))
  const pack = spawnSync('npm', ['pack', '--pack-destination', dir], { cwd: src, encoding: 'utf8' })
  assert.equal(pack.status, 0, pack.stderr)
  const tgz = join(dir, pack.stdout.trim().split('\n').pop() as string)
  const listed = spawnSync('tar', ['tzf', tgz], { encoding: 'utf8' }).stdout.split('\n')
  assert.ok(listed.includes('package/dist/src/cli.js'), 'the compiled build is in the package')
  assert.ok(listed.includes('package/dist/bundle/cli.js'), 'and its bundle, which bin/berth.js runs')
  assert.ok(!listed.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'no sources, no tests')

  const prefix = join(dir, 'prefix')
  const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', tgz], { encoding: 'utf8' })
  assert.equal(install.status, 0, install.stderr)
  assert.doesNotMatch(install.stderr, /EBADENGINE/)
  const installed = join(prefix, 'lib', 'node_modules', 'berth')
  rmSync(join(installed, 'node_modules', 'tsx'), { recursive: true, force: true }) // proves it is not needed
  const bin = join(prefix, 'bin', 'berth')
  const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` }
  const version = spawnSync('berth', ['--version'], { env, encoding: 'utf8' })
  assert.equal(version.stdout, `${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`, version.stderr)

  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  const etc = join(dir, 'etc')
  mkdirSync(etc)
  writeFileSync(join(etc, 'berth.yaml'), `listen: { host: 127.0.0.1, port: 0 }\nupstream: { servers: [ { url: "${up.url}" } ] }\npidFile: berth.pid\n`)
  const child = spawn(bin, ['start', '--config', join(etc, 'berth.yaml')], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { out += c })
  await waitFor(() => out.includes('"berth listening"') || child.exitCode !== null, 20_000, 'the installed berth to listen')
  const port = (JSON.parse(out.split('\n').find((l) => l.includes('"berth listening"')) as string) as { address: { port: number } }).address.port
  const status = await new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/v2/' }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 200)
  const stop = spawnSync('berth', ['stop', '--config', join(etc, 'berth.yaml')], { env, encoding: 'utf8' })
  assert.equal(stop.status, 0, stop.stderr)
  assert.deepEqual(await once(child, 'exit'), [0, null])

  // deploy/systemd/berth.service, pointed at this berth: systemd's own checker finds nothing to say.
  if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
    const unit = join(dir, 'berth.service')
    writeFileSync(unit, readFileSync(join(ROOT, 'deploy', 'systemd', 'berth.service'), 'utf8').replaceAll('/usr/local/bin/berth', bin))
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' })
    assert.equal(verify.stderr.split('\n').filter((l) => l !== '' && !l.includes('berth.service')).join('\n'), '', verify.stderr)
    assert.doesNotMatch(verify.stderr, /berth\.service:/, verify.stderr)
  }
})

test('deploy/: the unit, the logrotate snippet and the sample config agree on the pid file, the unit and the image on NODE_OPTIONS; the registry configs start a registry berth can front', { timeout: 60_000 }, async (t) => {
  const unit = readFileSync(join(ROOT, 'deploy', 'systemd', 'berth.service'), 'utf8')
  const sample = parse(readFileSync(join(ROOT, 'deploy', 'systemd', 'berth.yaml'), 'utf8')) as { pidFile: string, log: { access: string, error: string } }
  assert.match(unit, new RegExp(`^PIDFile=${sample.pidFile}$`, 'm'))
  assert.match(unit, /^ExecReload=\/usr\/local\/bin\/berth reload --config \/etc\/berth\/berth\.yaml$/m)
  assert.match(unit, new RegExp(`^Environment=NODE_OPTIONS=${imageNodeOptions()}$`, 'm'))
  for (const h of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes']) assert.match(unit, new RegExp(`^${h}$`, 'm'))
  const rotate = readFileSync(join(ROOT, 'deploy', 'logrotate', 'berth'), 'utf8')
  assert.ok(rotate.includes(`kill -USR1 "$(cat ${sample.pidFile})"`))
  assert.ok(rotate.startsWith('#') && rotate.includes(`${dirname(sample.log.access)}/*.log {`))
  const { parseConfig } = await import('../src/config/load.js')
  parseConfig(readFileSync(join(ROOT, 'deploy', 'systemd', 'berth.yaml'), 'utf8'), '/etc/berth/berth.yaml')

  const { freePort, requireTool } = await import('./e2e/fixtures.js')
  requireTool('docker-registry', 'docker-registry')
  for (const name of ['docker-registry.yml', 'registry-2.yml']) {
    const dir = tempDir(t)
    const port = await freePort()
    const text = readFileSync(join(ROOT, 'deploy', 'registry', name), 'utf8')
    assert.doesNotMatch(text, /^auth:/m, 'no registry auth behind berth')
    const file = join(dir, 'config.yml')
    writeFileSync(file, text.replace(/rootdirectory: [^ }]+/, `rootdirectory: ${dir}`).replace(/addr: \S+/, `addr: 127.0.0.1:${port}`))
    const registry = spawn('docker-registry', ['serve', file], { stdio: 'ignore' })
    t.after(() => { registry.kill('SIGKILL') })
    let status = 0
    for (let i = 0; i < 200 && status === 0; i++) {
      status = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status, () => 0)
      if (status === 0) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.equal(status, 200, `${name}: the registry serves /v2/ without auth of its own`)
    registry.kill('SIGTERM')
  }
  // Token mode's registry config, with a certificate from berth token-cert: it challenges toward berth.
  const dir = tempDir(t)
  const port = await freePort()
  const { makeTokenCert } = await import('../src/certs.js')
  const { cert } = await makeTokenCert(dir, 'berth')
  const text = readFileSync(join(ROOT, 'deploy', 'registry', 'registry-token.yml'), 'utf8')
  const file = join(dir, 'config.yml')
  writeFileSync(file, text.replace(/rootdirectory: [^ }]+/, `rootdirectory: ${dir}`).replace(/addr: \S+/, `addr: 127.0.0.1:${port}`).replace(/rootcertbundle: \S+/, `rootcertbundle: ${cert}`))
  const registry = spawn('docker-registry', ['serve', file], { stdio: 'ignore' })
  t.after(() => { registry.kill('SIGKILL') })
  let answer: Response | null = null
  for (let i = 0; i < 200 && answer === null; i++) {
    answer = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => null)
    if (answer === null) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.equal(answer?.status, 401, 'registry-token.yml: no token, no answer')
  assert.equal(answer?.headers.get('www-authenticate'), 'Bearer realm="https://registry.example.com/token",service="registry"')
  registry.kill('SIGTERM')
})
