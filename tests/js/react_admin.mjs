// react-admin's PostgREST data provider (ra-data-postgrest, with ra-core's
// fetchJson) against the API serving Sakila: BASE_URL and TAG from the
// environment; each call's result, or its HttpError, printed as one JSON object.
import provider from '@raphiniert/ra-data-postgrest'
import { fetchUtils } from 'ra-core'

const postgrestRestProvider = provider.default ?? provider
const httpClient = (url, options = {}) => {
  options.headers = options.headers ?? new Headers({ Accept: 'application/json' })
  options.headers.set('Authorization', 'Bearer writer-secret')
  return fetchUtils.fetchJson(url, options)
}
const dp = postgrestRestProvider({
  apiUrl: process.env.BASE_URL,
  httpClient,
  defaultListOp: 'eq',
  primaryKeys: new Map([
    ['actor', ['actor_id']],
    ['film', ['film_id']],
    ['film_actor', ['actor_id', 'film_id']],
    ['city', ['city_id']],
    ['category', ['category_id']],
  ]),
  schema: () => '',
})
const tag = process.env.TAG
const page = (perPage, field, order = 'ASC') => ({ pagination: { page: 1, perPage }, sort: { field, order } })
const calls = {
  list: () =>
    dp.getList('actor', { pagination: { page: 2, perPage: 5 }, sort: { field: 'last_name', order: 'ASC' }, filter: {} }),
  listById: () => dp.getList('film', { ...page(3, 'id', 'DESC'), filter: {} }),
  search: () => dp.getList('film', { ...page(5, 'title'), filter: { 'title@ilike': 'goldfinger' } }),
  filters: () => dp.getList('film', { ...page(2, 'title', 'DESC'), filter: { rating: 'PG', 'length@gt': 180 } }),
  or: () =>
    dp.getList('actor', {
      ...page(10, 'actor_id'),
      filter: { '@or': { 'first_name@ilike': 'penelope', 'last_name@eq': 'WAHLBERG' } },
    }),
  embed: () =>
    dp.getList('film', { ...page(1, 'id'), filter: {}, meta: { columns: ['film_id', 'title'], embed: ['language!language_id'] } }),
  one: () => dp.getOne('film', { id: 1 }),
  oneOfTwoKeys: () => dp.getOne('film_actor', { id: JSON.stringify([1, 23]) }),
  many: () => dp.getMany('film', { ids: [3, 1, 2] }),
  manyOfTwoKeys: () => dp.getMany('film_actor', { ids: [JSON.stringify([1, 1]), JSON.stringify([1, 23])] }),
  reference: () =>
    dp.getManyReference('city', { target: 'country_id', id: 44, ...page(3, 'city'), filter: {} }),
  create: () => dp.create('category', { data: { name: `${tag}` } }),
  createOfTwoKeys: () => dp.create('film_actor', { data: { actor_id: 2, film_id: 1 } }),
  duplicate: () => dp.create('film_actor', { data: { actor_id: 1, film_id: 1 } }),
  tooLong: () => dp.create('category', { data: { name: 'x'.repeat(26) } }),
}
const run = async (call) => {
  try {
    return { ok: await call() }
  } catch (error) {
    return { error: { status: error.status, message: error.message } }
  }
}
const results = {}
for (const [name, call] of Object.entries(calls)) results[name] = await run(call)
const created = results.create.ok?.data
const later = {
  update: () => dp.update('category', { id: created.id, data: { ...created, name: `${tag}!` }, previousData: created }),
  updateMany: () => dp.updateMany('category', { ids: [created.id], data: { name: `${tag}?` } }),
  delete: () => dp.delete('category', { id: created.id, previousData: created }),
  deleteOfTwoKeys: () => dp.delete('film_actor', { id: JSON.stringify([2, 1]) }),
  deleteMany: () => dp.deleteMany('category', { ids: [created.id] }),
  gone: () => dp.getOne('category', { id: created.id }),
}
for (const [name, call] of Object.entries(later)) results[name] = await run(call)
console.log(JSON.stringify(results))
