// The error log's two shapes: one readable line per event (a terminal, or errorFormat: pretty), and JSON
// lines for files and pipes; never a password either way. The access log's buffer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/load.js'
import { createLogs } from '../../src/logging.js'
import { tempDir, waitFor } from '../helper.js'

async function logged (dir: string, format: string): Promise<string> {
  const config = parseConfig(`upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\nlog: { error: error-${format}.log, errorFormat: ${format} }\n`, join(dir, 'berth.yaml'))
  const logs = await createLogs(config)
  logs.logger.warn({ upstream: '127.0.0.1:5000', password: 'hunter2' }, 'upstream out of rotation')
  await logs.settle()
  return readFileSync(join(dir, `error-${format}.log`), 'utf8')
}

test('errorFormat pretty: one readable line with level, message and fields; json (and auto, off a terminal): pino objects', async (t) => {
  const dir = tempDir(t)
  const pretty = await logged(dir, 'pretty')
  assert.equal(pretty.trim().split('\n').length, 1)
  assert.match(pretty, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] WARN: upstream out of rotation \{"upstream":"127\.0\.0\.1:5000","password":"\[redacted\]"\}\n$/)
  for (const format of ['json', 'auto']) {
    const line = JSON.parse(await logged(dir, format)) as Record<string, unknown>
    assert.equal(line.msg, 'upstream out of rotation')
    assert.equal(line.level, 40)
    assert.equal(line.password, '[redacted]')
  }
})

test('the access log is written in pieces of 64 KiB, as nginx with buffer=64k flush=1s: a quiet second\'s lines within the next one, all of it on settle', async (t) => {
  const dir = tempDir(t)
  const config = parseConfig(`upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\nlog: { access: access.log, error: error.log }\n`, join(dir, 'berth.yaml'))
  const logs = await createLogs(config)
  const file = join(dir, 'access.log')
  const read = () => existsSync(file) ? readFileSync(file, 'utf8') : ''
  const line = (i: number) => `127.0.0.1 - - [03/Dec/2026:06:00:00 +0000] "GET /v2/ HTTP/1.1" 401 86 "-" "test ${String(i).padStart(6, '0')}" rt=0.001 upstream=-\n`
  // Under 64 KiB: nothing written yet, then all of it within the flush interval.
  let i = 0
  for (; i < 100; i++) logs.access.write(line(i))
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(read(), '')
  await waitFor(() => read().split('\n').length === 101, 3000, 'a quiet second\'s lines')
  // 64 KiB of lines: written at once, without waiting for the interval.
  const before = read().length
  let size = 0
  for (; size < 64 * 1024; i++) { logs.access.write(line(i)); size += line(i).length }
  await waitFor(() => read().length >= before + 64 * 1024, 500, 'a full buffer written at once')
  logs.access.write(line(i++))
  await logs.settle()
  const lines = read().trimEnd().split('\n')
  assert.equal(lines.length, i)
  assert.deepEqual(lines.map((l) => Number(/test (\d+)/.exec(l)?.[1])), [...Array(i).keys()])
})
