// The operations the client runs. `npm run codegen` reads the graphql() calls below and writes
// src/gql/, whose overloads give each document its TypedDocumentNode<Result, Variables>.
import { graphql } from "./gql/index.js";

export const CreateSpace = graphql(`
  mutation CreateSpace($input: CreateSpaceInput!) {
    createSpace(input: $input) {
      id
      name
      accessMode
      createdAt
    }
  }
`);

export const ListSpaces = graphql(`
  query ListSpaces($first: Int, $after: String, $filter: SpaceFilter) {
    spaces(first: $first, after: $after, filter: $filter) {
      totalCount
      pageInfo {
        hasNextPage
        endCursor
      }
      edges {
        cursor
        node {
          id
          name
          memoryCount
        }
      }
    }
  }
`);

export const CreateMemory = graphql(`
  mutation CreateMemory($input: CreateMemoryInput!) {
    createMemory(input: $input) {
      id
      content
      tags
      metadata
      version
      createdAt
    }
  }
`);

export const SearchMemories = graphql(`
  query SearchMemories($input: SearchInput!) {
    searchMemories(input: $input) {
      score
      chunk
      memory {
        id
        content
        tags
      }
    }
  }
`);

export const MemoryEvents = graphql(`
  subscription MemoryEvents($spaceId: ID!) {
    memoryEvents(spaceId: $spaceId) {
      kind
      memoryId
      spaceId
      at
      memory {
        id
        content
      }
    }
  }
`);
