// PostGraphile 5 for bench/run: the amber preset over the `pgl` mirror schema.
// Settings come from the environment that bench/run sets.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.BENCH_PG_URL,
      schemas: [process.env.BENCH_PG_SCHEMA || "pgl"],
      poolConfig: { max: Number(process.env.BENCH_PG_POOL || 16) },
      pubsub: false,
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.BENCH_PORT || 5678),
    graphqlPath: "/graphql",
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};

export default preset;
