// npm run bench:auth — authenticated `GET /v2/` through berth to the real registry, for an apr1 user
// and a bcrypt cost-12 user, alternated round by round in one run. Not a test: numbers for the README.
// The bcrypt user should be within 10 % of the apr1 one: a verified credential is cached, so neither
// pays its hash per request.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { startRegistry, startBerthProcess } from '../test/e2e/fixtures.js'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const SECONDS = Number(process.env.SECONDS ?? 5)
const CONNECTIONS = 32

const cleanups: Array<() => Promise<void> | void> = []
const t = { after: (fn: () => Promise<void> | void) => { cleanups.push(fn) } }
const dir = mkdtempSync(join(tmpdir(), 'berth-bench-'))

function htpasswdLine (flags: string[], user: string, password: string): string {
  try {
    return execFileSync('htpasswd', ['-nb', ...flags, user, password], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('htpasswd is missing: apt-get install -y apache2-utils')
  }
}

async function run (port: number, authorization: string): Promise<{ rps: number, p50: number, p99: number, non2xx: number }> {
  const r = await autocannon({
    url: `https://127.0.0.1:${port}/v2/`,
    connections: CONNECTIONS,
    duration: SECONDS,
    headers: { authorization },
    servername: 'localhost'
  })
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]

try {
  const registry = await startRegistry(t, join(dir, 'registry'))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, [
    htpasswdLine(['-m'], 'apr1-user', 'apr1 pw'),
    htpasswdLine(['-B', '-C', '12'], 'bcrypt-user', 'bcrypt pw')
  ].join('\n') + '\n')
  const berth = await startBerthProcess(t, dir, [registry.url], `auth: { htpasswd: ${file} }`)
  const users = { apr1: 'Basic ' + Buffer.from('apr1-user:apr1 pw').toString('base64'), bcrypt: 'Basic ' + Buffer.from('bcrypt-user:bcrypt pw').toString('base64') }
  await run(berth.port, users.apr1) // warm up
  const results: Record<string, Array<Awaited<ReturnType<typeof run>>>> = { apr1: [], bcrypt: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of (round % 2 === 0 ? ['apr1', 'bcrypt'] : ['bcrypt', 'apr1']) as Array<keyof typeof users>) {
      const r = await run(berth.port, users[kind])
      if (r.non2xx > 0) throw new Error(`${kind}: ${r.non2xx} responses were not 2xx`)
      results[kind].push(r)
      process.stderr.write(`round ${round + 1} ${kind}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms\n`)
    }
  }
  const row = (kind: string) => {
    const rs = results[kind]
    return { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) }
  }
  const a = row('apr1')
  const b = row('bcrypt')
  console.log(`\nAuthenticated GET /v2/ through berth to the registry, ${CONNECTIONS} connections, ${SECONDS} s x ${ROUNDS} rounds (medians):\n`)
  console.log('| user | req/s | p50 ms | p99 ms |')
  console.log('| --- | --- | --- | --- |')
  console.log(`| apr1 | ${a.rps.toFixed(0)} | ${a.p50} | ${a.p99} |`)
  console.log(`| bcrypt cost 12 | ${b.rps.toFixed(0)} | ${b.p50} | ${b.p99} |`)
  console.log(`| bcrypt / apr1 | ${(b.rps / a.rps).toFixed(2)}x | | |`)
} finally {
  for (const fn of cleanups.reverse()) await fn()
  rmSync(dir, { recursive: true, force: true })
}
