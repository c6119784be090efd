# berth: compiled by tsc, bundled (scripts/bundle.mjs), run as a non-root user on the current Node.js LTS.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle.mjs scripts/
COPY src src
COPY plugins plugins
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# V8's young generation at most 8 MB a half instead of 16: under sustained load V8 grows it to its limit,
# and it is the largest part of berth's peak memory (12-14 MB less at the peak, 0-4 % more CPU per small
# request; docs/operations.md). To add a node option of your own, keep this one in the list.
ENV NODE_OPTIONS=--max-semi-space-size=8
WORKDIR /app
COPY package.json ./
COPY bin bin
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# Defaults; docker-compose.yml mounts ./config over this folder.
COPY config/docker.yaml config/docker-token.yaml /etc/berth/
USER node
EXPOSE 8443
ENTRYPOINT ["node", "bin/berth.js"]
CMD ["start", "--config", "/etc/berth/docker.yaml", "--init-certs"]
