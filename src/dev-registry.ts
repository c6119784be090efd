// `npm start` (berth start --dev) on a machine with no registry yet: when the configured upstream is one
// plain-HTTP registry on this machine and nothing answers there, berth starts Debian's docker-registry
// itself, with its storage and the config berth writes for it in data/registry/ next to the config file,
// and stops it when berth stops. Never outside --dev, never for any other upstream.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { dirname, join, relative } from 'node:path'
import type { BerthConfig } from './config/schema.js'
import { tcpProbe } from './upstream/probe.js'

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** The development upstream: one plain-HTTP registry on this machine, or null. */
function localUpstream (config: BerthConfig): URL | null {
  if (config.upstream.servers.length !== 1) return null
  const url = new URL(config.upstream.servers[0].url)
  return url.protocol === 'http:' && LOOPBACK.has(url.hostname) ? url : null
}

const answers = (host: string, port: number): Promise<boolean> => tcpProbe(host, port, 500).then(() => true, () => false)

async function ready (url: URL, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}`)
    try {
      const res = await fetch(new URL('/v2/', url))
      if (res.status === 200) return
    } catch { /* not yet */ }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('docker-registry did not answer within 10 s')
}

export interface DevRegistry { stop (): Promise<void> }

/**
 * Starts a development registry where the config expects one and none answers; says what it did, or how
 * to get one. Resolves null when berth starts none (berth then answers 502 until a registry is there).
 */
export async function ensureDevRegistry (config: BerthConfig, say: (line: string) => void): Promise<DevRegistry | null> {
  const url = localUpstream(config)
  if (url === null) return null
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port || 80)
  if (await answers(host, port)) return null
  if (spawnSync('sh', ['-c', 'command -v docker-registry']).status !== 0) {
    say(`berth: no registry answers at ${url.origin}. Install one with \`sudo apt-get install docker-registry\` (berth then starts it for npm start), or run \`docker compose up\`; berth answers 502 meanwhile.`)
    return null
  }
  const data = join(dirname(config.file), 'data', 'registry')
  mkdirSync(join(data, 'storage'), { recursive: true })
  const secretFile = join(data, 'http.secret')
  if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 })
  const file = join(data, 'config.yml')
  writeFileSync(file, [
    '# Written by berth for `npm start`: a development registry behind berth, no auth of its own.',
    'version: 0.1',
    'log: { level: warn, accesslog: { disabled: true } }',
    `storage: { filesystem: { rootdirectory: ${join(data, 'storage')} }, delete: { enabled: true } }`,
    'http:',
    `  addr: ${host.includes(':') ? `[${host}]` : host}:${port}`,
    `  secret: ${readFileSync(secretFile, 'utf8').trim()}`
  ].join('\n') + '\n')
  const child = spawn('docker-registry', ['serve', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  // However berth ends, the registry it started ends with it.
  const killOnExit = () => { if (child.exitCode === null) child.kill('SIGTERM') }
  process.once('exit', killOnExit)
  let err = ''
  child.stderr?.on('data', (c) => { err = (err + String(c)).slice(-2000) })
  try {
    await ready(url, child)
  } catch (e) {
    child.kill('SIGKILL')
    throw new Error(`the development registry did not start: ${(e as Error).message}\n${err}`)
  }
  say(`berth: started a development registry at ${url.origin} (docker-registry, storage ${relative(process.cwd(), join(data, 'storage')) || '.'}); it stops with berth`)
  return {
    async stop () {
      process.off('exit', killOnExit)
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 5000))])
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }
}
