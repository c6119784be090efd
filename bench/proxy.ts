// npm run bench:proxy — berth against nginx in the same run, round by round: download and upload of a
// 250 MB blob through each, and through nothing (the registry directly). nginx is configured as the
// seed's final server {} block (without the Tengine-only `check` line and the auth lines, with
// `proxy_request_buffering off` and `proxy_http_version 1.1` so that it streams too), berth with the
// equivalent config; one certificate for all. Installs nothing: it says which package is missing.
// Prints a markdown table of medians and writes bench/results/latest.json.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import https from 'node:https'
import { freePort, startRegistry, requireTool } from '../test/e2e/fixtures.js'
import { spawnBerth, testCerts, waitFor } from '../test/helper.js'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const MB = Number(process.env.BLOB_MB ?? 250)

const cleanups: Array<() => Promise<void> | void> = []
const t = { after: (fn: () => Promise<void> | void) => { cleanups.push(fn) } }
const dir = mkdtempSync(join(tmpdir(), 'berth-bench-'))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]

function need (cmd: string, pkg: string): void {
  try { requireTool(cmd, pkg) } catch { throw new Error(`${cmd} is missing: apt-get install -y ${pkg}`) }
}

function curl (args: string[]): string {
  const r = spawnSync('curl', ['-s', '-S', '--fail', ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

try {
  need('docker-registry', 'docker-registry')
  need('nginx', 'nginx-light')
  need('curl', 'curl')
  const files = await testCerts() // one certificate for the registry, nginx and berth
  const registry = await startRegistry(t, join(dir, 'registry'))

  // nginx, as the seed's final server {} block
  const nginxPort = await freePort()
  const prefix = join(dir, 'nginx')
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  writeFileSync(join(prefix, 'nginx.conf'), `
worker_processes 1;
error_log ${prefix}/logs/error.log;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${prefix}/logs/access.log;
  upstream registry { server 127.0.0.1:${registry.port} weight=1; }
  server {
    listen 127.0.0.1:${nginxPort} ssl;
    server_name localhost;
    ssl_certificate ${files.cert};
    ssl_certificate_key ${files.key};
    ssl_session_cache shared:SSL:1m;
    ssl_session_timeout 5m;
    ssl_ciphers HIGH:!aNULL:!MD5;
    ssl_prefer_server_ciphers on;
    client_max_body_size 300m;
    chunked_transfer_encoding on;
    location / {
      proxy_pass https://registry;
      proxy_next_upstream error timeout invalid_header http_500 http_502 http_503 http_504;
      proxy_redirect off;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`)
  const nginx: ChildProcess = spawn('nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' })
  cleanups.push(async () => { nginx.kill('SIGQUIT'); await once(nginx, 'exit') })

  // berth, with the equivalent config (its own CA bundle only for the upstream check)
  writeFileSync(join(dir, 'berth.yaml'), [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${files.cert}, key: ${files.key} }`,
    `upstream: { servers: [ { url: "https://127.0.0.1:${registry.port}" } ], tls: { ca: ${files.caCert} } }`,
    'limits: { maxBodySize: 300m }',
    // the error log on stderr: spawnBerth waits for its "berth listening" line
    `log: { access: ${join(dir, 'berth-access.log')}, error: "-" }`
  ].join('\n'))
  const berth = await spawnBerth(t, ['--config', join(dir, 'berth.yaml')])
  await waitFor(() => spawnSync('curl', ['-s', '--cacert', files.caCert, `https://localhost:${nginxPort}/v2/`]).status === 0, 10_000, 'nginx')

  // the blob, pushed once to the registry directly
  const blobFile = join(dir, 'blob')
  const out = createWriteStream(blobFile)
  const hash = createHash('sha256')
  for (let i = 0; i < MB; i++) { const b = randomBytes(1 << 20); hash.update(b); if (!out.write(b)) await once(out, 'drain') }
  out.end()
  await once(out, 'finish')
  const digest = `sha256:${hash.digest('hex')}`

  const targets = { registry: registry.port, nginx: nginxPort, berth: berth.port }
  const base = (port: number) => `https://localhost:${port}`
  const startUpload = (port: number) => new Promise<string>((resolve, reject) => {
    https.request({ host: '127.0.0.1', port, path: '/v2/bench/blob/blobs/uploads/', method: 'POST', ca: readFileSync(files.caCert), servername: 'localhost', headers: { host: `localhost:${port}`, 'content-length': 0 } }, (res) => {
      res.resume()
      res.on('end', () => resolve(String(res.headers.location)))
    }).on('error', reject).end()
  })
  const upload = async (port: number) => {
    const location = await startUpload(port)
    const speed = curl(['--cacert', files.caCert, '-o', '/dev/null', '-w', '%{speed_upload}', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', '-T', blobFile, `${location}&digest=${encodeURIComponent(digest)}`])
    return Number(speed) / 1048576
  }
  const download = (port: number) => Number(curl(['--cacert', files.caCert, '-o', '/dev/null', '-w', '%{speed_download}', `${base(port)}/v2/bench/blob/blobs/${digest}`])) / 1048576

  await upload(targets.registry)
  for (const port of Object.values(targets)) download(port) // warm up
  const results: Record<string, { download: number[], upload: number[] }> = { registry: { download: [], upload: [] }, nginx: { download: [], upload: [] }, berth: { download: [], upload: [] } }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['registry', 'nginx', 'berth'] : ['berth', 'nginx', 'registry']
    for (const name of order) results[name].download.push(download(targets[name as keyof typeof targets]))
    for (const name of order) results[name].upload.push(await upload(targets[name as keyof typeof targets]))
    process.stderr.write(`round ${round + 1}: ${order.map((n) => `${n} down ${results[n].download.at(-1)?.toFixed(0)} up ${results[n].upload.at(-1)?.toFixed(0)} MB/s`).join(', ')}\n`)
  }
  const row = (what: 'download' | 'upload', label: string) => {
    const [r, n, b] = ['registry', 'nginx', 'berth'].map((k) => median(results[k][what]))
    return `| ${label} | ${r.toFixed(0)} | ${n.toFixed(0)} | ${b.toFixed(0)} | **${(b / n).toFixed(2)}x** |`
  }
  const table = [
    `| ${MB} MB blob, MB/s (median of ${ROUNDS}) | registry direct | nginx | berth | berth / nginx |`,
    '| --- | --- | --- | --- | --- |',
    row('download', 'download (GET)'),
    row('upload', 'monolithic upload (POST, then PUT with digest)')
  ].join('\n')
  console.log(`\n${table}\n`)
  const nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim()
  writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify({
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, nginx: nginxVersion },
    blobMB: MB,
    rounds: ROUNDS,
    results,
    table
  }, null, 2) + '\n')
} finally {
  for (const fn of cleanups.reverse()) await fn()
  rmSync(dir, { recursive: true, force: true })
}
