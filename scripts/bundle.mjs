// The command line as the Docker image runs it: tsc's output (dist/src) and the packages it loads, bundled
// by esbuild into dist/bundle, minified, with the modules loaded on demand (ACME, certificates, LDAP,
// tokens, Redis, the password prompt) left in chunks of their own that load when first used.
//
// Why: every module Node loads costs memory for as long as the process lives (its wrapper, its place in
// the module caches, the resolution of its path, its source text, which V8 keeps for functions compiled
// lazily). tsc's output opens about 470 files of JavaScript at start, the bundle a dozen; it takes 12-17 MB
// less 3 s after start and 5-10 MB less once idle (docs/measurements.md, "Idle memory"). The code is tsc's
// output, minified; the source maps lead back to it (NODE_OPTIONS=--enable-source-maps gives stack traces
// with dist/src's lines).
//
// Left outside the bundle, loaded from node_modules as before: @node-rs/bcrypt (a native addon), tsx (it
// registers its loader by its own file's path; only for plugins written in TypeScript), and what berth
// requires by a computed name (apache-md5, Fastify's schema compilers) or a user's plugin imports.
//
// node scripts/bundle.mjs [DIST]: DIST is tsc's output folder (dist/ by default).
import { build } from 'esbuild'
import { rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = resolve(process.argv[2] ?? fileURLToPath(new URL('../dist', import.meta.url)))
const outdir = join(dist, 'bundle')
rmSync(outdir, { recursive: true, force: true })
await build({
  // lean-start: bin/berth.js loads it before the CLI (src/lean-start.ts); the two share its module
  entryPoints: [join(dist, 'src', 'cli.js'), join(dist, 'src', 'lean-start.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  sourcemap: 'linked',
  sourcesContent: false, // the maps name dist/src's files, which ship beside them
  external: ['@node-rs/bcrypt', 'tsx'],
  // CommonJS packages in an ES module bundle call `require` for Node's built-ins
  banner: { js: 'import { createRequire as __berthRequire } from \'node:module\'; const require = __berthRequire(import.meta.url);' },
  logLevel: 'warning'
})
