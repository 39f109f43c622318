// A space's details as a Relay component would declare them: `@refetchable` on `Space` needs
// `Space implements Node` and `Query.node(id:)`, which relay-compiler checks against the schema.
import { graphql } from "relay-runtime";

export const SpaceDetailsFragment = graphql`
  fragment SpaceDetails_space on Space @refetchable(queryName: "SpaceDetailsRefetchQuery") {
    name
    memoryCount
    viewerPermission
  }
`;
