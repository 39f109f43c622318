// GraphQL Code Generator config: the client preset (typed `graphql()` + TypedDocumentNode),
// from the committed SDL and the operations in src/operations.ts, into src/gql/ (not committed).
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/operations.ts"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      config: {
        scalars: { DateTime: "string", JSON: "unknown" },
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
        // Relative imports with ".js", as Node's ESM resolution (and tsconfig's nodenext) needs.
        importExtension: ".js",
      },
    },
  },
};

export default config;
