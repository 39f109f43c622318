// The fragment a `usePaginationFragment` on `Space.memories` uses: a `@connection` with
// `first`/`after`, refetchable through `node(id:)` for the next pages.
import { graphql } from "relay-runtime";

export const SpaceMemoriesFragment = graphql`
  fragment SpaceMemories_space on Space
  @refetchable(queryName: "SpaceMemoriesPaginationQuery")
  @argumentDefinitions(count: { type: "Int", defaultValue: 2 }, cursor: { type: "String" }) {
    memories(first: $count, after: $cursor) @connection(key: "SpaceMemories_memories") {
      edges {
        node {
          id
          content
        }
      }
    }
  }
`;
