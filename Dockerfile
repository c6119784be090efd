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
