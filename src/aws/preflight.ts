/**
 * The preflight: after the plan, before `ray up`, in seconds, with the run's own credentials. It
 * asks AWS what `ray up` and the run will need and reports each problem as one finding, one line
 * that names the fix: the results bucket (in the region, and writable: a probe object written and
 * deleted), each node type's AMI (`resolve:ssm:` parameters resolved first), the instance profile
 * and the nodes' role (made by Ray's defaults, or by the setup stack of another region), the
 * subnets exactly as Ray chooses them and the availability zones, the session duration STS
 * refused, and the account's vCPU quotas for the cluster at its largest (a warning: a quota may
 * be raised in time, and running instances share it). Errors stop the run
 * (exit 2) before anything is created; checks it could not make are warnings that say why.
 * Whether the role can be assumed is the caller's part (the AWS target assumes it; the CLI checks
 * the environment's credentials with `credentialsFinding`).
 */
import { randomUUID } from "node:crypto";
import {
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeSecurityGroupsCommand,
  EC2Client,
  paginateDescribeSubnets,
  type _InstanceType,
} from "@aws-sdk/client-ec2";
import {
  GetInstanceProfileCommand,
  GetRoleCommand,
  IAMClient,
  ListAttachedRolePoliciesCommand,
} from "@aws-sdk/client-iam";
import {
  DeleteObjectCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import {
  GetAWSDefaultServiceQuotaCommand,
  GetServiceQuotaCommand,
  ServiceQuotasClient,
} from "@aws-sdk/client-service-quotas";
import { GetParametersCommand, SSMClient } from "@aws-sdk/client-ssm";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import type { AwsCredentialIdentityProvider } from "@aws-sdk/types";
import type { Finding } from "../errors.js";

export type { Finding } from "../errors.js";

export interface PreflightInput {
  region: string;
  bucket: string;
  /** Where `s3_bucket` is set (configs/mcs_config_M_LEVEL.ini), for the fix. */
  bucketSource: string;
  /** The cluster YAML, parsed. Only Ray's AWS provider gets the EC2 and IAM checks. */
  cluster: Record<string, unknown>;
  /** Its file (autoscaler/ray_M_aws.yaml), for the fix. */
  clusterSource: string;
  /** The run's credentials; absent: the SDK's default chain. */
  credentials?: AwsCredentialIdentityProvider;
  /**
   * The action's role and its role-duration-seconds when STS refused a session that long (more
   * than the role's MaxSessionDuration) and `credentials` are a session of an hour instead.
   */
  refusedDuration?: { roleArn: string; seconds: number };
  /**
   * Why the cluster must reach its largest (deadline-minutes sized it): a vCPU quota below that is
   * then an error, not a warning.
   */
  quotaRequiredBy?: string;
}

/** Where the probe object goes (and is deleted at once): the role needs s3:PutObject there. */
export const PROBE_PREFIX = "mcs-preflight/";

/** Ray's instance profile for the head when its node_config names none (aws/config.py). */
export const RAY_DEFAULT_PROFILE = "ray-autoscaler-v1";
/** The role Ray's bootstrap puts in that profile, and the setup stack's nodes' role (aws/config.py). */
export const RAY_DEFAULT_ROLE = "ray-autoscaler-v1";
/** What Ray's bootstrap attaches to the role when it creates it (_configure_iam_role). */
const RAY_DEFAULT_POLICIES = [
  "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
  "arn:aws:iam::aws:policy/AmazonS3FullAccess",
];
/** The setup stack's tag on its nodes' role: the one region its permissions serve. */
export const REGION_TAG = "mcs-pipeline:region";
/** The session every role allows (MaxSessionDuration is 3600 to 43200 seconds). */
const MIN_SESSION_SECONDS = 3600;
/** Ray's choice instead when the provider configures the CloudWatch agent (cloudwatch_helper.py). */
const RAY_CLOUDWATCH_PROFILE = "ray-autoscaler-cloudwatch-v1";

/** What Ray's bootstrap calls to create its default profile (and role) on the first `ray up`. */
const CREATE_PROFILE_PERMISSIONS =
  "iam:CreateInstanceProfile, iam:GetRole, iam:CreateRole, iam:AttachRolePolicy, iam:AddRoleToInstanceProfile and iam:PassRole";

const error = (text: string): Finding => ({ level: "error", text });
const warning = (text: string): Finding => ({ level: "warning", text });
const nameOf = (e: unknown) => (e as { name?: string }).name ?? "Error";
const status = (e: unknown) =>
  (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
/** The error's code; the bare HTTP status when AWS's answer carried none the SDK could read. */
const code = (e: unknown) =>
  /^(Unknown|SyntaxError|Error)$/.test(nameOf(e)) && status(e) ? `HTTP ${status(e)}` : nameOf(e);
const oneLine = (e: unknown) =>
  code(e).startsWith("HTTP ")
    ? code(e)
    : `${code(e)}: ${(e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").trim()}`;
/** Refused for want of a permission (whatever the code, or none: a 403). */
const denied = (e: unknown) =>
  /AccessDenied|UnauthorizedOperation|Forbidden|NotAuthorized/i.test(nameOf(e)) ||
  status(e) === 403;

interface NodeType {
  name: string;
  head: boolean;
  /** How many workers of this type the cluster may run (capped by the cluster's max_workers). */
  maxWorkers: number;
  config: Record<string, unknown>;
}

interface Clients {
  s3: S3Client;
  ec2: EC2Client;
  ssm: SSMClient;
  iam: IAMClient;
  quotas: ServiceQuotasClient;
}

/** Every check, in parallel; the findings in a fixed order (bucket, images, profiles, network, quotas). */
export async function preflight(input: PreflightInput): Promise<Finding[]> {
  const config = { region: input.region, credentials: input.credentials };
  const clients: Clients = {
    // Path-style works with S3-compatible endpoints (AWS_ENDPOINT_URL) as well as AWS itself;
    // a bucket of another region is asked again where S3 redirects (its own region).
    s3: new S3Client({
      ...config,
      forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL),
      followRegionRedirects: true,
    }),
    ec2: new EC2Client(config),
    ssm: new SSMClient(config),
    iam: new IAMClient(config),
    quotas: new ServiceQuotasClient(config),
  };
  const provider = (input.cluster.provider ?? {}) as Record<string, unknown>;
  const aws = provider.type === "aws";
  const types = aws ? nodeTypes(input.cluster) : [];
  const check = (what: string, work: () => Promise<Finding[]>) =>
    work().catch((e: unknown) => [
      warning(`could not check ${what}: ${denied(e) ? code(e) : oneLine(e)}`),
    ]);
  try {
    const results = await Promise.all([
      check(`bucket ${input.bucket}`, () => checkBucket(input, clients.s3)),
      ...(aws
        ? [
            check("the AMIs", () => checkImages(input, types, clients)),
            check("the instance profile", () => checkProfiles(input, types, provider, clients.iam)),
            check("the subnets and zones", () => checkNetwork(input, types, provider, clients.ec2)),
            check("the vCPU quotas", () => checkQuotas(input, types, clients)),
          ]
        : []),
      check("the session duration", () => checkDuration(input, clients.iam)),
    ]);
    return results.flat();
  } finally {
    for (const client of Object.values(clients)) client.destroy();
  }
}

/** The credentials of the environment (CLI): one finding when AWS refuses them, else none. */
export async function credentialsFinding(region: string): Promise<Finding[]> {
  const sts = new STSClient({ region });
  try {
    await sts.send(new GetCallerIdentityCommand({}));
    return [];
  } catch (e) {
    return [
      error(
        `AWS credentials: ${oneLine(e)}: give this shell the credentials of the role that runs ` +
          "the pipeline (AWS_PROFILE, or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)",
      ),
    ];
  } finally {
    sts.destroy();
  }
}

/** The node types as Ray reads them: a type's max_workers defaults to, and is capped by, the cluster's. */
function nodeTypes(cluster: Record<string, unknown>): NodeType[] {
  const all = (cluster.available_node_types ?? {}) as Record<string, Record<string, unknown>>;
  const global = typeof cluster.max_workers === "number" ? cluster.max_workers : 2;
  return Object.entries(all).map(([name, type]) => ({
    name,
    head: name === cluster.head_node_type,
    maxWorkers: Math.min(typeof type.max_workers === "number" ? type.max_workers : global, global),
    config: (type.node_config ?? {}) as Record<string, unknown>,
  }));
}

/** `key → the node types that have it`, in the YAML's order. */
function byValue(
  types: NodeType[],
  key: (t: NodeType) => string | undefined,
): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const type of types) {
    const value = key(type);
    if (value) map.set(value, [...(map.get(value) ?? []), type.name]);
  }
  return map;
}

const named = (types: string[]) => `node type${types.length > 1 ? "s" : ""} ${types.join(", ")}`;

// ── the bucket ───────────────────────────────────────────────────────────────────────────────

async function checkBucket(input: PreflightInput, s3: S3Client): Promise<Finding[]> {
  const { bucket, region } = input;
  const subject = `bucket ${bucket} (s3_bucket in ${input.bucketSource})`;
  let where: string;
  try {
    // GetBucketLocation (s3:GetBucketLocation) answers for a bucket of any region; us-east-1's
    // buckets have no location constraint, the oldest of eu-west-1 say "EU".
    const out = await s3.send(new GetBucketLocationCommand({ Bucket: bucket }));
    const constraint: string = out.LocationConstraint ?? "";
    where = constraint === "" ? "us-east-1" : constraint === "EU" ? "eu-west-1" : constraint;
  } catch (e) {
    if (/^(NotFound|NoSuchBucket)$/.test(nameOf(e))) {
      return [
        error(
          `${subject} does not exist: create it in ${region} (the setup stack does), or name an existing bucket in s3_bucket`,
        ),
      ];
    }
    if (denied(e)) {
      return [
        error(
          `${subject}: the role may not read its region (GetBucketLocation: ${code(e)}): allow s3:GetBucketLocation on arn:aws:s3:::${bucket}, or name a bucket of this account in s3_bucket`,
        ),
      ];
    }
    throw e;
  }
  if (where !== region) {
    return [
      error(
        `${subject} is in ${where}, not ${region}: run in ${where} (aws-region and provider.region of ${input.clusterSource}), or use a bucket in ${region}`,
      ),
    ];
  }
  const key = `${PROBE_PREFIX}${randomUUID()}`;
  const allow = `allow s3:PutObject and s3:DeleteObject on arn:aws:s3:::${bucket}/${PROBE_PREFIX}*`;
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: "mcs-pipeline preflight probe: deleted at once\n",
      }),
    );
  } catch (e) {
    if (!denied(e)) throw e;
    return [error(`${subject}: the role may not write to it (PutObject: ${code(e)}): ${allow}`)];
  }
  try {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    return [
      error(
        `${subject}: the role wrote s3://${bucket}/${key} but may not delete it (${code(e)}): ${allow}, and delete that object`,
      ),
    ];
  }
  return checkVersioning(input, s3).catch((e: unknown) => {
    if (!denied(e)) throw e;
    return [warning(`${subject}: its versioning not checked (GetBucketVersioning: ${code(e)})`)];
  });
}

/**
 * Histories and videos keep MCS's names, so a later run writes the same keys: only a versioned
 * bucket keeps each run's files, which its report links by version. A warning: nothing is lost
 * for this run. Checked once the bucket is known to be usable.
 */
async function checkVersioning(input: PreflightInput, s3: S3Client): Promise<Finding[]> {
  const { bucket } = input;
  const out = await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
  if (out.Status === "Enabled") return [];
  return [
    warning(
      `bucket ${bucket} keeps no object versions: a later run replaces each scene's history and videos, and older reports will link the newer files; turn versioning on (the setup stack does, or aws s3api put-bucket-versioning --bucket ${bucket} --versioning-configuration Status=Enabled)`,
    ),
  ];
}

// ── the AMIs ─────────────────────────────────────────────────────────────────────────────────

const SSM_PREFIX = "resolve:ssm:";

/** Each distinct ImageId once (`resolve:ssm:` through SSM GetParameters, as EC2 resolves it). */
async function checkImages(input: PreflightInput, types: NodeType[], c: Clients) {
  const images = byValue(types, (t) =>
    typeof t.config.ImageId === "string" ? t.config.ImageId : undefined,
  );
  const findings = await Promise.all(
    [...images].map(async ([imageId, users]): Promise<Finding[]> => {
      const subject = `${named(users)}: ImageId ${imageId}`;
      let ami = imageId;
      if (imageId.startsWith(SSM_PREFIX)) {
        const parameter = imageId.slice(SSM_PREFIX.length);
        let out;
        try {
          out = await c.ssm.send(new GetParametersCommand({ Names: [parameter] }));
        } catch (e) {
          if (!denied(e)) throw e;
          return [
            error(
              `${subject}: the role may not read the parameter (${code(e)}), and EC2 resolves it with the role's permissions: allow ssm:GetParameters on arn:aws:ssm:${input.region}::parameter/${parameter.replace(/^\//, "").replace(/:[^/]*$/, "")}`,
            ),
          ];
        }
        const value = out.Parameters?.[0]?.Value;
        if (!value) {
          return [
            error(
              `${subject}: SSM has no parameter ${parameter} in ${input.region}: fix the name in ${input.clusterSource} (Ubuntu's are under /aws/service/canonical/ubuntu/server/, e.g. /aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id)`,
            ),
          ];
        }
        ami = value;
      }
      const shown = ami === imageId ? subject : `${subject} (${ami})`;
      const missing = error(
        `${shown} does not exist in ${input.region}: AMI IDs differ per region; use an AMI of ${input.region} in ${input.clusterSource}, or resolve:ssm:<a public parameter> to get the region's own`,
      );
      try {
        const out = await c.ec2.send(new DescribeImagesCommand({ ImageIds: [ami] }));
        const image = out.Images?.[0];
        if (!image) return [missing];
        if (image.State && image.State !== "available") {
          return [
            error(
              `${shown} is ${image.State}, not available: use another AMI in ${input.clusterSource}`,
            ),
          ];
        }
        return [];
      } catch (e) {
        if (/^InvalidAMIID\./.test(nameOf(e))) return [missing];
        if (denied(e)) {
          return [
            warning(`${shown}: not checked: the role may not ec2:DescribeImages (${code(e)})`),
          ];
        }
        throw e;
      }
    }),
  );
  return findings.flat();
}

// ── the instance profile ─────────────────────────────────────────────────────────────────────

/** `IamInstanceProfile: {Arn}` or `{Name}`: the profile's name (the ARN's last path segment). */
function profileName(config: Record<string, unknown>): string | undefined {
  const profile = config.IamInstanceProfile as { Arn?: string; Name?: string } | undefined;
  return profile?.Name ?? profile?.Arn?.split("/").pop();
}

/**
 * The profiles the node types name must exist. A head that names none gets Ray's default, which
 * Ray's bootstrap creates when it is missing: whether the role may do that cannot be asked (IAM's
 * policy simulator needs a permission few roles have), so a missing default is a warning naming
 * the permissions it takes.
 */
async function checkProfiles(
  input: PreflightInput,
  types: NodeType[],
  provider: Record<string, unknown>,
  iam: IAMClient,
): Promise<Finding[]> {
  const profiles = byValue(types, (t) => profileName(t.config));
  const head = types.find((t) => t.head);
  // Ray's bootstrap gives its default profile to the head only: workers must name one.
  const bare = types.filter((t) => !t.head && !profileName(t.config)).map((t) => t.name);
  const workerFindings = bare.length
    ? [
        warning(
          `${named(bare)} ${bare.length > 1 ? "name" : "names"} no IamInstanceProfile: Ray gives one to the head only, so their scenes could not write results to S3; set IamInstanceProfile: {Name: ${RAY_DEFAULT_PROFILE}} (the setup stack's profile) in ${input.clusterSource}`,
        ),
      ]
    : [];
  const cloudwatch = Boolean((provider.cloudwatch as { agent?: unknown } | undefined)?.agent);
  const fallback = cloudwatch ? RAY_CLOUDWATCH_PROFILE : RAY_DEFAULT_PROFILE;
  const checks = [...profiles].map(([name, users]) => ({ name, users, own: true }));
  if (head && !profileName(head.config))
    checks.push({ name: fallback, users: [head.name], own: false });
  const roles = new Set<string>();
  const findings = await Promise.all(
    checks.map(async ({ name, users, own }): Promise<Finding[]> => {
      const subject = own
        ? `${named(users)}: instance profile ${name} (IamInstanceProfile)`
        : `head node type ${users[0]} names no IamInstanceProfile, so Ray uses ${name}, which`;
      try {
        const out = await iam.send(new GetInstanceProfileCommand({ InstanceProfileName: name }));
        for (const role of out.InstanceProfile?.Roles ?? []) roles.add(role.RoleName ?? "");
        if (!own && !out.InstanceProfile?.Roles?.length) {
          return [
            warning(
              `${subject} has no role: Ray adds one on the first ray up, which needs ${CREATE_PROFILE_PERMISSIONS}; give it a role, or set IamInstanceProfile in ${input.clusterSource}`,
            ),
          ];
        }
        return [];
      } catch (e) {
        if (nameOf(e) === "NoSuchEntityException" || nameOf(e) === "NoSuchEntity") {
          return own
            ? [
                error(
                  `${subject} does not exist: create it (the setup stack's node instance profile) or fix IamInstanceProfile in ${input.clusterSource}`,
                ),
              ]
            : [
                warning(
                  `${subject} does not exist: Ray creates it on the first ray up, which needs ${CREATE_PROFILE_PERMISSIONS}; set IamInstanceProfile (the setup stack's profile) in ${input.clusterSource}, or create ${name} once`,
                ),
              ];
        }
        if (denied(e)) {
          // Ray's bootstrap reads the default profile itself; a named one it only passes on.
          const text = `${subject}: the role may not iam:GetInstanceProfile (${code(e)})`;
          return own
            ? [warning(`${text}: not checked`)]
            : [error(`${text}, which Ray's bootstrap needs: allow iam:GetInstanceProfile`)];
        }
        throw e;
      }
    }),
  );
  const nodesRole = roles.has(RAY_DEFAULT_ROLE) ? await checkNodesRole(input, iam) : [];
  return [...workerFindings, ...findings.flat(), ...nodesRole];
}

/**
 * The nodes' role ray-autoscaler-v1: made by Ray's bootstrap (AmazonEC2FullAccess and
 * AmazonS3FullAccess: code on a node could change anything in EC2 and S3), or by the setup stack
 * for another region (its REGION_TAG): then the head launches, and every worker launch from it
 * is refused.
 */
async function checkNodesRole(input: PreflightInput, iam: IAMClient): Promise<Finding[]> {
  const RoleName = RAY_DEFAULT_ROLE;
  const notChecked = (what: string, action: string) => (e: unknown) => {
    if (!denied(e)) throw e;
    return warning(
      `the nodes' role ${RoleName}: ${what} not checked: the role may not iam:${action} (${code(e)})`,
    );
  };
  const [role, attached] = await Promise.all([
    iam.send(new GetRoleCommand({ RoleName })).catch(notChecked("its region", "GetRole")),
    iam
      .send(new ListAttachedRolePoliciesCommand({ RoleName }))
      .catch(notChecked("its managed policies", "ListAttachedRolePolicies")),
  ]);
  const findings: Finding[] = [];
  for (const answer of [role, attached]) if ("level" in answer) findings.push(answer);
  if ("AttachedPolicies" in attached) {
    const ray = (attached.AttachedPolicies ?? [])
      .filter((p) => RAY_DEFAULT_POLICIES.includes(p.PolicyArn ?? ""))
      .map((p) => p.PolicyName ?? p.PolicyArn);
    if (ray.length) {
      findings.push(
        error(
          `the nodes' role ${RoleName} has ${ray.join(" and ")} attached, as Ray's bootstrap makes it when an account has none, so code on every node could change any EC2 resource and S3 object of the account: delete role and instance profile ${RAY_DEFAULT_PROFILE}, then deploy the setup stack (cloudformation/mcs-pipeline-setup.yaml)`,
        ),
      );
    }
  }
  if ("Role" in role) {
    const serves = role.Role?.Tags?.find((t) => t.Key === REGION_TAG)?.Value;
    if (serves && serves !== input.region) {
      findings.push(
        error(
          `the nodes' role ${RoleName} serves ${serves} (its tag ${REGION_TAG}: the setup stack's region), not ${input.region}, so the head's launches of workers would be refused: run in ${serves} (aws-region and provider.region of ${input.clusterSource}), or deploy the setup stack in ${input.region} instead (one per account)`,
        ),
      );
    }
  }
  return findings;
}

// ── the session duration ─────────────────────────────────────────────────────────────────────

/**
 * A role-duration-seconds above the role's MaxSessionDuration: STS refuses it with a message
 * that reads like a trust problem. The role's own MaxSessionDuration (iam:GetRole) makes the
 * line exact when the role may read it.
 */
async function checkDuration(input: PreflightInput, iam: IAMClient): Promise<Finding[]> {
  const refused = input.refusedDuration;
  if (!refused) return [];
  const { roleArn, seconds } = refused;
  let max: number | undefined;
  let unread = "";
  try {
    const out = await iam.send(new GetRoleCommand({ RoleName: roleArn.split("/").pop() }));
    max = out.Role?.MaxSessionDuration;
  } catch (e) {
    unread = ` (its MaxSessionDuration not read: iam:GetRole ${code(e)})`;
  }
  const limit = max === undefined ? `is less than that${unread}` : `is ${max}`;
  return [
    error(
      `role-duration-seconds is ${seconds} but the MaxSessionDuration of ${roleArn} ${limit}, so STS refuses the session: lower role-duration-seconds to ${max ?? MIN_SESSION_SECONDS} or less (the action renews its credentials before they expire, so ${MIN_SESSION_SECONDS} serves runs of any length), or raise the role's MaxSessionDuration`,
    ),
  ];
}

// ── subnets and zones ────────────────────────────────────────────────────────────────────────

/** A subnet as Ray's bootstrap reads it (boto3's ec2.Subnet). */
export interface RaySubnet {
  id: string;
  vpc: string;
  zone: string;
  state: string;
  public: boolean;
}

/** Why `ray up` would abort choosing a node type's subnets (each a cli_logger.abort of Ray's). */
type SubnetAbort =
  | { kind: "none"; scope: RaySubnet[] }
  | { kind: "unusable"; pruned: RaySubnet[] }
  | { kind: "zones"; zones: string[]; usable: RaySubnet[] }
  | { kind: "mismatch"; zones: string[]; pruned: RaySubnet[] }
  | { kind: "vpcs"; user: RaySubnet[] };

/** One node type's subnets as Ray chooses them: the IDs it launches into, or why it aborts. */
export type SubnetChoice = { type: string; vpcOfSg?: string; user: boolean } & (
  { subnets: string[] } | { abort: SubnetAbort }
);

/** A node type's SubnetIds and SecurityGroupIds as Ray reads them (NetworkInterfaces first). */
function rayNetwork(config: Record<string, unknown>) {
  // _configure_from_network_interfaces copies the interfaces' subnets and groups up.
  const interfaces = Array.isArray(config.NetworkInterfaces)
    ? (config.NetworkInterfaces as { SubnetId?: string; Groups?: string[] }[])
    : undefined;
  const subnetIds = interfaces
    ? interfaces.map((n) => n.SubnetId ?? "")
    : Array.isArray(config.SubnetIds)
      ? (config.SubnetIds as string[])
      : undefined;
  const groups = interfaces
    ? interfaces.flatMap((n) => n.Groups ?? [])
    : Array.isArray(config.SecurityGroupIds)
      ? (config.SecurityGroupIds as string[])
      : [];
  return { subnetIds, groups };
}

/**
 * The subnets of each node type exactly as Ray 2.60's bootstrap chooses them
 * (ray/autoscaler/_private/aws/config.py: _configure_subnet, _usable_subnet_ids): node types
 * with SubnetIds first, then the others, which are held to the VPC of the security groups or,
 * when none are given, of the last node type's SubnetIds. A subnet is usable when it is
 * available and maps public IPs on launch (unless provider.use_internal_ips), in the VPC, in a
 * zone of provider.availability_zone when given; then only the VPC of the first one (subnets
 * sorted by zone, Z to A) is kept. `all` is every subnet of the region (ec2.subnets.all()),
 * `vpcOfSg` the one VPC of the node types' SecurityGroupIds. After the first abort Ray stops, so
 * the node types after it get no choice.
 */
export function raySubnets(
  cluster: Record<string, unknown>,
  all: RaySubnet[],
  vpcOfSg: string | undefined,
): SubnetChoice[] {
  const provider = (cluster.provider ?? {}) as Record<string, unknown>;
  const azs =
    typeof provider.availability_zone === "string" ? provider.availability_zone : undefined;
  const internal = Boolean(provider.use_internal_ips);
  const types = Object.entries(
    (cluster.available_node_types ?? {}) as Record<
      string,
      { node_config?: Record<string, unknown> }
    >,
  ).map(([type, t]) => ({ type, subnetIds: rayNetwork(t.node_config ?? {}).subnetIds }));
  const choices: SubnetChoice[] = [];
  let sgVpc = vpcOfSg;
  let lastVpc: string | undefined;
  const choose = (type: string, user?: RaySubnet[]): boolean => {
    const result = usableSubnets(user, all, azs, sgVpc, internal);
    const common = { type, user: Boolean(user), ...(sgVpc && { vpcOfSg: sgVpc }) };
    if ("abort" in result) {
      choices.push({ ...common, abort: result.abort });
      return false;
    }
    choices.push({ ...common, subnets: result.subnets });
    lastVpc = result.vpc;
    return true;
  };
  for (const { type, subnetIds } of types.filter((t) => t.subnetIds)) {
    // _get_subnets_or_die (each ID once, in the order EC2 lists them): the missing ones are
    // checkNetwork's; here they are left out.
    const ids = new Set(subnetIds);
    if (
      !choose(
        type,
        all.filter((s) => ids.has(s.id)),
      )
    )
      return choices;
  }
  if (lastVpc && !sgVpc) sgVpc = lastVpc;
  // The others all get the same choice (the same inputs): when it aborts, it is each one's.
  for (const { type } of types.filter((t) => !t.subnetIds)) choose(type, undefined);
  return choices;
}

/** _usable_subnet_ids of Ray 2.60, step by step. */
function usableSubnets(
  user: RaySubnet[] | undefined,
  all: RaySubnet[],
  azs: string | undefined,
  vpcOfSg: string | undefined,
  internal: boolean,
): { subnets: string[]; vpc: string } | { abort: SubnetAbort } {
  let scope = user ?? all;
  if (vpcOfSg) scope = scope.filter((s) => s.vpc === vpcOfSg);
  // Python's sorted(reverse=True) keeps equal keys in their order, as JS's stable sort does.
  let subnets = scope
    .filter((s) => s.state === "available" && (internal || s.public))
    .sort((a, b) => (a.zone < b.zone ? 1 : a.zone > b.zone ? -1 : 0));
  const pruned = (kept: RaySubnet[]) =>
    user && kept.length !== user.length ? user.filter((s) => !kept.includes(s)) : undefined;
  if (!subnets.length) return { abort: { kind: "none", scope } };
  const unusable = pruned(subnets);
  if (unusable) return { abort: { kind: "unusable", pruned: unusable } };
  if (azs !== undefined) {
    const zones = azs.split(",").map((z) => z.trim());
    const usable = subnets;
    subnets = zones.flatMap((z) => usable.filter((s) => s.zone === z));
    if (!subnets.length) return { abort: { kind: "zones", zones, usable } };
    const outside = pruned(subnets);
    if (outside) return { abort: { kind: "mismatch", zones, pruned: outside } };
  }
  const vpc = subnets[0]!.vpc;
  subnets = subnets.filter((s) => s.vpc === vpc);
  if (pruned(subnets)) return { abort: { kind: "vpcs", user: user! } };
  return { subnets: subnets.map((s) => s.id), vpc };
}

/** Every subnet of the region, as Ray lists them (ec2.subnets.all(), every page). */
export async function allSubnets(ec2: EC2Client): Promise<RaySubnet[]> {
  const subnets: RaySubnet[] = [];
  for await (const page of paginateDescribeSubnets({ client: ec2 }, {})) {
    for (const s of page.Subnets ?? []) {
      subnets.push({
        id: s.SubnetId ?? "",
        vpc: s.VpcId ?? "",
        zone: s.AvailabilityZone ?? "",
        state: s.State ?? "",
        public: s.MapPublicIpOnLaunch === true,
      });
    }
  }
  return subnets;
}

const list = (items: string[]) => items.join(", ");

/** provider.availability_zone as a list of zone names (none when it is not given). */
function listedZones(provider: Record<string, unknown>): string[] {
  return typeof provider.availability_zone === "string"
    ? provider.availability_zone
        .split(",")
        .map((z) => z.trim())
        .filter(Boolean)
    : [];
}

/** One line per abort: what Ray looked at, why none fits, and the fix. */
function subnetFinding(
  input: PreflightInput,
  types: string[],
  choice: SubnetChoice & { abort: SubnetAbort },
  provider: Record<string, unknown>,
): Finding {
  const { abort } = choice;
  const file = input.clusterSource;
  const internal = Boolean(provider.use_internal_ips);
  const zones = listedZones(provider);
  const inVpc = choice.vpcOfSg
    ? ` in ${choice.vpcOfSg} (the VPC of the SecurityGroupIds, or of the other node types' SubnetIds)`
    : "";
  const inZones = zones.length ? ` in ${list(zones)}` : "";
  const publicIp = `turn on auto-assign public IPv4 addresses (MapPublicIpOnLaunch) on a subnet${inZones}${choice.vpcOfSg ? ` of ${choice.vpcOfSg}` : ""}`;
  const internalFix = `or set use_internal_ips: true in provider of ${file} (then the runner must reach the nodes' private addresses)`;
  const subject = `${named(types)}: `;
  const rule = internal
    ? "available subnets"
    : "available subnets that map public IPv4 addresses on launch";
  switch (abort.kind) {
    case "none": {
      const what = choice.user
        ? `of SubnetIds (${list(abort.scope.map((s) => s.id)) || "none"})`
        : `of ${input.region}${inVpc}`;
      return error(
        `${subject}no usable subnet ${what}: Ray uses only ${rule}, and none of the ${abort.scope.length} is one, so ray up aborts ("No usable subnets found"): ${internal ? `create a subnet${inZones}${choice.vpcOfSg ? ` in ${choice.vpcOfSg}` : ""}` : `${publicIp}, ${internalFix}`}`,
      );
    }
    case "unusable": {
      const why = abort.pruned.map((s) =>
        s.state !== "available"
          ? `${s.id} is ${s.state}`
          : choice.vpcOfSg && s.vpc !== choice.vpcOfSg
            ? `${s.id} is in ${s.vpc}, not ${choice.vpcOfSg}`
            : `${s.id} does not map public IPv4 addresses on launch`,
      );
      return error(
        `${subject}SubnetIds: ${list(why)}, so Ray refuses ${abort.pruned.length > 1 ? "them" : "it"} and ray up aborts: use other subnets in ${file}, turn on auto-assign public IPv4 addresses (MapPublicIpOnLaunch) on ${abort.pruned.length > 1 ? "them" : "it"}, ${internalFix}`,
      );
    }
    case "zones": {
      if (choice.user) {
        return subnetFinding(
          input,
          types,
          { ...choice, abort: { ...abort, kind: "mismatch", pruned: abort.usable } },
          provider,
        );
      }
      const usable = [...new Set(abort.usable.map((s) => s.zone))].sort();
      return error(
        `${subject}no usable subnet in ${list(abort.zones)} (provider.availability_zone of ${file})${inVpc}: Ray uses only ${rule}, and those are in ${list(usable)} only, so ray up aborts ("No usable subnets matching availability zone"): list one of ${list(usable)} in availability_zone, or ${publicIp}`,
      );
    }
    case "mismatch":
      return error(
        `${subject}${abort.pruned.map((s) => `subnet ${s.id} is in ${s.zone}`).join(", ")}, which provider.availability_zone does not list, so Ray refuses it: add ${list([...new Set(abort.pruned.map((s) => s.zone))])} to availability_zone or use a subnet of ${list(abort.zones)}`,
      );
    case "vpcs":
      return error(
        `${subject}SubnetIds are in more than one VPC (${list(abort.user.map((s) => `${s.id}: ${s.vpc}`))}), which Ray refuses: list subnets of one VPC in ${file}`,
      );
  }
}

/** The one VPC of the node types' SecurityGroupIds (Ray's _get_vpc_id_of_sg), or a finding. */
async function securityGroupVpc(
  input: PreflightInput,
  types: NodeType[],
  ec2: EC2Client,
): Promise<string | Finding | undefined> {
  const ids = [...new Set(types.flatMap((t) => rayNetwork(t.config).groups))].sort();
  if (!ids.length) return undefined;
  const out = await ec2.send(
    new DescribeSecurityGroupsCommand({ Filters: [{ Name: "group-id", Values: ids }] }),
  );
  const vpcs = [...new Set((out.SecurityGroups ?? []).map((g) => g.VpcId ?? ""))];
  if (vpcs.length === 1) return vpcs[0];
  return vpcs.length
    ? error(
        `SecurityGroupIds ${list(ids)} belong to more than one VPC (${list(vpcs)}), which Ray refuses: use security groups of one VPC in ${input.clusterSource}`,
      )
    : error(
        `SecurityGroupIds ${list(ids)}: no such security group in ${input.region}: fix SecurityGroupIds in ${input.clusterSource}`,
      );
}

async function checkNetwork(
  input: PreflightInput,
  types: NodeType[],
  provider: Record<string, unknown>,
  ec2: EC2Client,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const zones = listedZones(provider);
  const [zoneList, subnets, sgVpc] = await Promise.all([
    zones.length ? ec2.send(new DescribeAvailabilityZonesCommand({})) : undefined,
    allSubnets(ec2),
    securityGroupVpc(input, types, ec2),
  ]);
  if (zoneList) {
    const real = (zoneList.AvailabilityZones ?? []).map((z) => z.ZoneName!).filter(Boolean);
    const unknown = zones.filter((z) => !real.includes(z));
    if (unknown.length) {
      findings.push(
        error(
          `provider.availability_zone of ${input.clusterSource} names ${unknown.join(", ")}, not a zone of ${input.region}: list zones of ${input.region} (${real.join(", ")})`,
        ),
      );
    }
  }
  if (typeof sgVpc === "object") return [...findings, sgVpc];
  // Subnets the node types name that the region does not have (Ray's _get_subnets_or_die).
  const known = new Set(subnets.map((s) => s.id));
  const missing = new Map<string, string[]>();
  for (const type of types) {
    for (const id of rayNetwork(type.config).subnetIds ?? []) {
      if (!known.has(id)) missing.set(id, [...(missing.get(id) ?? []), type.name]);
    }
  }
  for (const [id, users] of missing) {
    findings.push(
      error(
        `${named(users)}: subnet ${id} does not exist in ${input.region}: use a subnet of ${input.region} in ${input.clusterSource}`,
      ),
    );
  }
  if (missing.size) return findings;
  // Node types with the same abort share one line.
  const lines = new Map<
    string,
    { types: string[]; choice: SubnetChoice & { abort: SubnetAbort } }
  >();
  for (const choice of raySubnets(input.cluster, subnets, sgVpc)) {
    if (!("abort" in choice)) continue;
    const key = JSON.stringify({ ...choice, type: undefined });
    const line = lines.get(key) ?? { types: [], choice };
    line.types.push(choice.type);
    lines.set(key, line);
  }
  for (const { types: users, choice } of lines.values()) {
    findings.push(subnetFinding(input, users, choice, provider));
  }
  return findings;
}

// ── vCPU quotas ──────────────────────────────────────────────────────────────────────────────

interface Quota {
  code: string;
  name: string;
}

/** Prefixes (the letters before the generation digit) of the Standard families' instance types. */
const STANDARD = new Set(["a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"]);

/**
 * The EC2 vCPU quota an instance type counts against (Service Quotas, service code ec2), or
 * undefined for families this check does not know (then it says so).
 */
export function vcpuQuota(instanceType: string, spot: boolean): Quota | undefined {
  const prefix = /^([a-z]+)\d/.exec(instanceType)?.[1] ?? "";
  if (STANDARD.has(prefix)) {
    return spot
      ? {
          code: "L-34B43A08",
          name: "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
        }
      : {
          code: "L-1216C47A",
          name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        };
  }
  if (prefix === "g" || prefix === "gr" || prefix === "vt") {
    return spot
      ? { code: "L-3819A6DF", name: "All G and VT Spot Instance Requests" }
      : { code: "L-DB2E81BA", name: "Running On-Demand G and VT instances" };
  }
  if (prefix === "p") {
    if (!spot) return { code: "L-417A185B", name: "Running On-Demand P instances" };
    if (/^p[234]/.test(instanceType)) {
      return { code: "L-7212CCBC", name: "All P4, P3 and P2 Spot Instance Requests" };
    }
  }
  return undefined;
}

const isSpot = (config: Record<string, unknown>) =>
  (config.InstanceMarketOptions as { MarketType?: string } | undefined)?.MarketType === "spot";

/**
 * Per quota, the most vCPUs the cluster can hold: the head (when of that quota) and the cluster's
 * max_workers filled with that quota's largest worker types, each up to its own max_workers.
 */
async function checkQuotas(
  input: PreflightInput,
  types: NodeType[],
  c: Clients,
): Promise<Finding[]> {
  const instanceTypes = byValue(types, (t) =>
    typeof t.config.InstanceType === "string" ? t.config.InstanceType : undefined,
  );
  const vcpus = new Map<string, number>();
  const typeFindings = await Promise.all(
    [...instanceTypes].map(async ([instanceType, users]): Promise<Finding[]> => {
      try {
        const out = await c.ec2.send(
          new DescribeInstanceTypesCommand({ InstanceTypes: [instanceType as _InstanceType] }),
        );
        const n = out.InstanceTypes?.[0]?.VCpuInfo?.DefaultVCpus;
        if (n) vcpus.set(instanceType, n);
        return [];
      } catch (e) {
        if (nameOf(e) !== "InvalidInstanceType") throw e;
        return [
          error(
            `${named(users)}: InstanceType ${instanceType} does not exist in ${input.region}: fix it in ${input.clusterSource}`,
          ),
        ];
      }
    }),
  );
  const findings = typeFindings.flat();
  const global = typeof input.cluster.max_workers === "number" ? input.cluster.max_workers : 2;
  const groups = new Map<string, { quota: Quota; head?: NodeType; workers: NodeType[] }>();
  for (const type of types) {
    const instanceType = type.config.InstanceType as string | undefined;
    if (!instanceType || !vcpus.has(instanceType)) continue;
    if (!type.head && type.maxWorkers === 0) continue;
    const spot = isSpot(type.config);
    const quota = vcpuQuota(instanceType, spot);
    if (!quota) {
      findings.push(
        warning(
          `node type ${type.name}: the vCPU quota of ${instanceType}${spot ? " (spot)" : ""} is not checked: see Service Quotas (Amazon EC2) in ${input.region}`,
        ),
      );
      continue;
    }
    const group = groups.get(quota.code) ?? { quota, workers: [] };
    if (type.head) group.head = type;
    if (type.maxWorkers > 0) group.workers.push(type);
    groups.set(quota.code, group);
  }
  const cpus = (t: NodeType) => vcpus.get(t.config.InstanceType as string)!;
  const quotaFindings = await Promise.all(
    [...groups.values()].map(async ({ quota, head, workers }): Promise<Finding[]> => {
      const parts: string[] = head ? [`head 1 × ${head.config.InstanceType}`] : [];
      let need = head ? cpus(head) : 0;
      let slots = global;
      for (const type of [...workers].sort((a, b) => cpus(b) - cpus(a))) {
        const n = Math.min(type.maxWorkers, slots);
        if (n <= 0) continue;
        need += n * cpus(type);
        slots -= n;
        parts.push(`${n} × ${type.config.InstanceType}`);
      }
      let value: number | undefined;
      try {
        value = await quotaValue(c.quotas, quota.code);
      } catch (e) {
        const why = denied(e) ? `${code(e)}: allow servicequotas:GetServiceQuota` : oneLine(e);
        return [warning(`vCPU quota ${quota.code} (${quota.name}) not checked: ${why}`)];
      }
      if (value === undefined || need <= value) return [];
      const where = `the account's quota in ${input.region} is ${value}: request ${quota.code} of ${need} or more in Service Quotas`;
      return [
        input.quotaRequiredBy
          ? error(
              `${input.quotaRequiredBy}: ${need} vCPUs of "${quota.name}" (${parts.join(" + ")}) but ${where}, or allow more time`,
            )
          : warning(
              `the cluster may run ${need} vCPUs of "${quota.name}" (${parts.join(" + ")}) but ${where}, or lower max_workers in ${input.clusterSource}`,
            ),
      ];
    }),
  );
  return [...findings, ...quotaFindings.flat()];
}

/** The applied quota; AWS's default where none is applied (GetServiceQuota's NoSuchResource). */
async function quotaValue(quotas: ServiceQuotasClient, code: string): Promise<number | undefined> {
  const ask = { ServiceCode: "ec2", QuotaCode: code };
  try {
    return (await quotas.send(new GetServiceQuotaCommand(ask))).Quota?.Value;
  } catch (e) {
    if (nameOf(e) !== "NoSuchResourceException") throw e;
    return (await quotas.send(new GetAWSDefaultServiceQuotaCommand(ask))).Quota?.Value;
  }
}
