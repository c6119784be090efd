// Custom plugins from the config's `plugins` list: loaded in order by dynamic import, after auth and
// access and before the proxy, with their `options`. `berth check` loads them too.
//
// Encapsulation, the Fastify way: a plugin's hooks must reach the proxy route, and in Fastify hooks reach
// only routes declared in the same context or below it. So the plugins form a chain of contexts, each
// plugin running in its own link, and the proxy route is declared in the last one. A plugin's decorators
// and hooks are therefore invisible to berth's own plugins and to the plugins before it; the plugins
// after it (its descendants) see them, as any Fastify child sees its parent's.
import { pathToFileURL } from 'node:url'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync, FastifyPluginCallback } from 'fastify'
import type { BerthConfig } from './config/schema.js'
import { ConfigError } from './errors.js'

type AnyPlugin = FastifyPluginAsync<Record<string, unknown>> | FastifyPluginCallback<Record<string, unknown>>

/** Imports a plugin module; throws with the path and the reason when it is not a Fastify plugin. */
/** TypeScript plugins need tsx; berth running from its sources has it already (bin/berth.js). */
async function typescriptLoader (): Promise<void> {
  if (process.env.BERTH_TSX === '1') return
  const { register } = await import('tsx/esm/api')
  register()
  process.env.BERTH_TSX = '1'
}

async function loadPlugin (path: string): Promise<AnyPlugin> {
  let mod: { default?: unknown }
  try {
    if (/\.[cm]?ts$/.test(path)) await typescriptLoader()
    mod = await import(pathToFileURL(path).href) as { default?: unknown }
  } catch (err) {
    throw new Error(`cannot load ${path}: ${(err as Error).message.split('\n')[0]}`)
  }
  // A CommonJS module imported from ESM may nest its export once more.
  let plugin = mod.default
  if (typeof plugin === 'object' && plugin !== null && 'default' in plugin) plugin = (plugin as { default: unknown }).default
  if (typeof plugin !== 'function') throw new Error(`${path}: the default export is not a Fastify plugin (a function), it is ${plugin === undefined ? 'missing' : typeof plugin}`)
  return plugin as AnyPlugin
}

/** For `berth check`: every plugin problem, each naming the config key and the path. */
export async function pluginProblems (config: BerthConfig): Promise<string[]> {
  const problems: string[] = []
  for (const [i, p] of config.plugins.entries()) {
    try { await loadPlugin(p.path) } catch (err) { problems.push(`plugins[${i}].path: ${(err as Error).message}`) }
  }
  return problems
}

/** Registers the plugins as a chain of contexts and calls `last` with the innermost one (for the proxy). */
export async function registerUserPlugins (app: FastifyInstance, config: BerthConfig, last: (context: FastifyInstance) => Promise<void>): Promise<void> {
  const plugins: AnyPlugin[] = []
  for (const [i, p] of config.plugins.entries()) {
    try {
      plugins.push(await loadPlugin(p.path))
    } catch (err) {
      throw new ConfigError(config.file, [`plugins[${i}].path: ${(err as Error).message}`])
    }
  }
  const link = async (context: FastifyInstance, i: number): Promise<void> => {
    if (i === plugins.length) { await last(context); return }
    await context.register(async function userPluginContext (child) {
      // fp: the plugin runs in `child` itself, so its hooks reach the routes below it.
      await child.register(fp(plugins[i] as FastifyPluginAsync, { name: `berth-user-plugin-${i}`, fastify: '5.x' }), config.plugins[i].options)
      await link(child, i + 1)
    })
  }
  await link(app, 0)
}
