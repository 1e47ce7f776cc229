// Drives @backstage/catalog-client, unchanged, against the server at argv[2]
// and prints one JSON line per check so the Python test can assert on each.
// Like a Backstage app's fetchApi, the fetch it is given adds the caller's token
// (PAVEDROAD_TOKEN) to every request.
const { CatalogClient } = require('@backstage/catalog-client');

const baseUrl = process.argv[2];
const extraFile = process.argv[3];
const token = process.env.PAVEDROAD_TOKEN;
const client = new CatalogClient({
  discoveryApi: { getBaseUrl: async () => `${baseUrl}/api/catalog` },
  fetchApi: {
    fetch: (input, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('Authorization', `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    },
  },
});

async function main() {
  const out = {};
  const all = await client.getEntities({ filter: { kind: 'component' }, fields: ['metadata.name'] });
  out.components = all.items.map(e => e.metadata.name).sort();

  const services = await client.getEntities({
    filter: { kind: 'component', 'spec.type': 'service' },
    fields: ['metadata.name', 'spec.type'],
    order: { field: 'metadata.name', order: 'desc' },
  });
  out.servicesDesc = services.items.map(e => e.metadata.name);

  const first = await client.queryEntities({ filter: { kind: 'component' }, limit: 5, fields: ['metadata.name'] });
  const names = first.items.map(e => e.metadata.name);
  let cursor = first.pageInfo.nextCursor;
  while (cursor) {
    const page = await client.queryEntities({ cursor, limit: 5 });
    names.push(...page.items.map(e => e.metadata.name));
    cursor = page.pageInfo.nextCursor;
  }
  out.pagedTotal = first.totalItems;
  out.paged = names;

  const search = await client.queryEntities({ filter: { kind: 'component' }, fullTextFilter: { term: 'payments', fields: ['metadata.name'] } });
  out.search = search.items.map(e => e.metadata.name).sort();

  const entity = await client.getEntityByRef('component:default/orders-service');
  out.entity = { name: entity.metadata.name, uid: entity.metadata.uid, relations: entity.relations };
  out.missing = (await client.getEntityByRef('component:default/does-not-exist')) ?? null;

  const byRefs = await client.getEntitiesByRefs({
    entityRefs: ['component:default/orders-service', 'component:default/nope', 'api:default/orders-api'],
    fields: ['kind', 'metadata.name'],
  });
  out.byRefs = byRefs.items;

  const facets = await client.getEntityFacets({ facets: ['kind', 'spec.lifecycle'] });
  out.facets = facets.facets;

  out.ancestors = await client.getEntityAncestors({ entityRef: 'component:default/orders-service' });

  const added = await client.addLocation({ type: 'file', target: extraFile });
  out.added = { target: added.location.target, entities: added.entities.map(e => e.metadata.name).sort() };
  out.location = await client.getLocationById(added.location.id);
  out.locationByEntity = await client.getLocationByEntity('component:default/compat-extra');
  out.locations = (await client.getLocations()).items.map(l => l.target).sort();
  await client.refreshEntity('component:default/compat-extra');

  out.valid = await client.validateEntity({
    apiVersion: 'backstage.io/v1alpha1', kind: 'Component',
    metadata: { name: 'ok' }, spec: { type: 'service', lifecycle: 'production', owner: 'team' },
  }, 'url:https://example.com/catalog-info.yaml');
  out.invalid = await client.validateEntity({
    apiVersion: 'backstage.io/v1alpha1', kind: 'Component',
    metadata: { name: 'not ok' }, spec: { type: 'service', lifecycle: 'production' },
  }, 'url:https://example.com/catalog-info.yaml');

  await client.removeLocationById(added.location.id);
  out.afterRemove = (await client.getEntityByRef('component:default/compat-extra')) ?? null;
  try {
    await client.getLocationById('00000000-0000-0000-0000-000000000000').then(v => { out.unknownLocation = v; });
  } catch (e) {
    out.unknownLocationError = e.name;
  }
  console.log(JSON.stringify(out));
}

main().catch(error => { console.error(error.stack || String(error)); process.exit(1); });
