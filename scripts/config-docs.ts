// npm run docs:config: rewrites the configuration reference in docs/configuration.md from the schema.
import { readFileSync, writeFileSync } from 'node:fs'
import { withReference, configReference } from '../src/config/docs.js'

const file = new URL('../docs/configuration.md', import.meta.url)
if (process.argv.includes('--write')) {
  writeFileSync(file, withReference(readFileSync(file, 'utf8')))
} else {
  process.stdout.write(configReference())
}
