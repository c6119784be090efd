// Fastify's schema compilers, loaded when a route first needs one.
//
// Fastify requires its validator compiler (ajv, its formats, fast-uri) and its serializer compiler
// (fast-json-stringify) as it builds an instance, whether or not a route carries a schema. berth's own
// routes carry none; the compilers cost 1.4 MB of live heap and about 4 MB of RSS in a berth just
// started (docs/measurements.md, "Idle memory"). These factories are Fastify's own, required from
// Fastify's place in node_modules the first time a route with a schema (a custom plugin's) is
// registered; nothing here runs per request.
import { createRequire } from 'node:module'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'

type Factory = (...args: unknown[]) => unknown
type Compilers = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>

const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))

/** A `schemaController.compilersFactory` for one instance: Fastify's defaults, loaded on first use. */
export function lazySchemaCompilers (): Compilers {
  let validator: Factory | undefined
  let serializer: Factory | undefined
  return {
    buildValidator: ((...args: unknown[]) => {
      validator ??= (fromFastify('@fastify/ajv-compiler') as () => Factory)()
      return validator(...args)
    }) as Compilers['buildValidator'],
    buildSerializer: ((...args: unknown[]) => {
      serializer ??= (fromFastify('@fastify/fast-json-stringify-compiler') as () => Factory)()
      return serializer(...args)
    }) as Compilers['buildSerializer']
  }
}

/**
 * Fastify takes any `compilersFactory` for a custom validator, and then compiles header schemas as
 * written, where with its own it lowercases their keys (Node lowercases incoming header names) and warns
 * about unsafe references. These factories are its own: the root controller is told so, before any
 * plugin is registered (children copy the flag). If a Fastify release renames its internals, the flag
 * stays as Fastify set it and the plugin tests' mixed-case header schema fails.
 */
export function keepDefaultHeaderHandling (app: FastifyInstance): void {
  const key = Object.getOwnPropertySymbols(app).find((s) => s.description === 'fastify.schemaController')
  if (key === undefined) return
  const controller = (app as unknown as Record<symbol, { isCustomValidatorCompiler?: unknown }>)[key]
  if (typeof controller?.isCustomValidatorCompiler === 'boolean') controller.isCustomValidatorCompiler = false
}
