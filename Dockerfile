# dosvob's worker and CLI in one image: `docker run … dosvob worker`, `… dosvob status`.
# Runs from the TypeScript sources through tsx, as from a git checkout: no build step to drift from them.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
# ssh2's optional native crypto binding doubles SSH throughput; it needs a compiler to build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    DOSVOB_DATA_DIR=/data \
    DOSVOB_CONFIG=/dosvob/conf.json
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY client ./client
COPY common ./common
COPY worker ./worker
COPY workflows ./workflows
COPY activities ./activities
COPY scripts ./scripts
RUN ln -s /app/bin/dosvob.js /usr/local/bin/dosvob && mkdir -p /data /dosvob
# The backups directory and conf.json are mounted at /dosvob; a relative backups_dir resolves there. The process stays
# root (or whatever `user:` compose sets), since it must write a host directory whose owner the image cannot know.
WORKDIR /dosvob
ENTRYPOINT ["dosvob"]
CMD ["worker"]
