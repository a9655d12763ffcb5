"""The GraphQL schema (SDL) of the subset of Numerai's tournament API the sandbox serves."""

SDL = """
enum RoundStatus { UPCOMING OPEN RESOLVING RESOLVED }

type RoundScoreConfig {
  id: ID
  scoreConfigId: ID
  roundNumberStart: Int
  roundNumberEnd: Int
  name: String
  version: String
  displayName: String
  totalScoreDays: Int
  returnsLagDays: Int
  dataDelayDays: Int
  universe: String
  isCanonScore: Boolean
  isPayout: Boolean
  scoringStart: String
  scoringEnd: String
  minMultiplier: String
  maxMultiplier: String
  defaultMultiplier: String
  clipThreshold: String
  stakeThreshold: String
  payoutFactor: String
}

type Round {
  id: ID!
  tournament: Int!
  number: Int!
  target: String
  openTime: String!
  closeStakingTime: String!
  closeTime: String!
  scoreTime: String
  resolveTime: String
  resolvedGeneral: Boolean!
  resolvedStaking: Boolean!
  payoutFactor: String
  stakeThreshold: String
  dataDatestamp: Int
  roundScoreConfigs: [RoundScoreConfig!]!
}

type Submission {
  id: ID!
  filename: String
  insertedAt: String
  triggerId: String
  selected: Boolean!
  round: Round
}

type SignalsSubmission {
  id: ID!
  firstEffectiveDate: String
}

type V2Stake {
  status: String
  txHash: String
}

type Model {
  id: String!
  name: String!
  tournament: Int!
  submissions: [Submission!]!
  v2Stake: V2Stake
  submissionWebhook: String
}

type ApiToken {
  name: String
  public_id: String
  scopes: [String]
}

type Account {
  id: String!
  username: String!
  email: String
  status: String
  walletAddress: String
  availableNmr: String
  mfaEnabled: Boolean
  insertedAt: String
  models: [Model!]!
  apiTokens: [ApiToken!]!
}

type UploadAuth {
  filename: String!
  url: String!
}

type Tournament {
  id: ID!
  name: String!
  tournament: Int!
  active: Boolean!
}

type AccountProfileModel {
  id: String!
  displayName: String!
  tournament: Int!
}

type AccountProfile {
  username: String!
  models: [AccountProfileModel!]!
}

type UserProfile {
  id: String!
  username: String!
  startDate: String
  bio: String
  nmrStaked: String
  stakeValue: String
}

type PayoutMultiplier {
  id: ID
  scoreConfigId: ID
  name: String
  version: String
  displayName: String
  multiplier: Float
}

type RoundSubmissionScore {
  date: String
  day: Int
  displayName: String
  payoutPending: String
  payoutSettled: String
  percentile: Float
  value: Float
}

type RoundModelPerformance {
  atRisk: String
  payoutMultipliers: [PayoutMultiplier!]!
  roundPayoutFactor: String
  roundNumber: Int!
  roundOpenTime: String
  roundResolveTime: String
  roundResolved: Boolean!
  roundTarget: String
  submissionScores: [RoundSubmissionScore!]
  intraRoundSubmissionScores: [RoundSubmissionScore!]
}

type SubmissionScore {
  roundId: ID
  submissionId: ID
  roundNumber: Int
  roundResolveTime: String
  roundScoreTime: String
  roundCloseStakingTime: String
  value: Float
  percentile: Float
  displayName: String
  version: String
  date: String
  day: Int
  resolveDate: String
  resolved: Boolean
}

type Query {
  listDatasets(round: Int, tournament: Int): [String!]!
  dataset(filename: String!, round: Int, tournament: Int): String!
  rounds(tournament: Int, number: Int, target: String, status: RoundStatus, limit: Int): [Round]!
  account: Account!
  model(modelId: String): Model
  submissions(modelId: String): [Submission!]!
  submission_upload_auth(filename: String!, tournament: Int, modelId: String): UploadAuth!
  submissionUploadSignalsAuth(filename: String!, tournament: Int, modelId: String): UploadAuth!
  tournaments: [Tournament!]!
  accountProfile(username: String!, tournament: Int): AccountProfile
  v3UserProfile(model_name: String, modelName: String, tournament: Int): UserProfile
  v2RoundModelPerformances(modelId: String!, tournament: Int): [RoundModelPerformance!]!
  submissionScores(
    modelId: ID!
    displayName: String
    version: String
    day: Int
    resolved: Boolean
    tournament: Int
    lastNRounds: Int
    distinctOnRound: Boolean
  ): [SubmissionScore!]!
}

type Mutation {
  create_submission(
    filename: String!
    tournament: Int
    modelId: String
    triggerId: String
    source: String
    dataDatestamp: Int
  ): Submission!
  createSignalsSubmission(
    filename: String!
    modelId: String
    triggerId: String
    source: String
    dataDatestamp: Int
  ): SignalsSubmission!
  setSubmissionWebhook(modelId: String!, newSubmissionWebhook: String): String!
  triggerModelWebhook(modelId: String!, tournament: Int): String!
}
"""
