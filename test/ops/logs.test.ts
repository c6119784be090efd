// The error log's two shapes: one readable line per event (a terminal, or errorFormat: pretty), and JSON
// lines for files and pipes; never a password either way.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/load.js'
import { createLogs } from '../../src/logging.js'
import { tempDir } from '../helper.js'

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
