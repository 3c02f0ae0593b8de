//! The one table of commands: each command's name, context and the operation whose permission it
//! needs. The name is what every event the command appends records (`metadata.command`), what
//! metrics count it under (`careledger_commands_total{command}`) and its NATS subject
//! (`careledger.commands.<context>.<name>`); `tests/tests/command_table.rs` holds them together.
//! Permissions are configured per [`Operation`], not per command: several commands share one
//! (openIMIS rights), and queries need operations too.

use std::collections::HashMap;

/// A bounded context (DESIGN "Bounded contexts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    Codes,
    Claims,
    Insurees,
    Registry,
    Requisitions,
    /// Imports from peers: the events of other contexts, as a peer's Bundle brings them.
    Sync,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Codes => "codes",
            Context::Claims => "claims",
            Context::Insurees => "insurees",
            Context::Registry => "registry",
            Context::Requisitions => "requisitions",
            Context::Sync => "sync",
        }
    }
}

macro_rules! operations {
    ($($(#[$doc:meta])* $variant:ident => $key:literal, $permission:literal;)+) => {
        /// What a caller does, each needing one permission string (configurable with
        /// `CARELEDGER_PERMISSIONS=key=permission,...`; defaults follow the seeds: openIMIS rights by
        /// their numeric codes, eHealth scopes by name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($(#[$doc])* $variant),+
        }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),+];

            /// Its name in `CARELEDGER_PERMISSIONS`.
            pub fn key(self) -> &'static str {
                match self {
                    $(Operation::$variant => $key),+
                }
            }

            /// The permission it needs unless configured otherwise.
            pub fn default_permission(self) -> &'static str {
                match self {
                    $(Operation::$variant => $permission),+
                }
            }
        }
    };
}

operations! {
    GenerateCodes => "generate_codes", "111101";
    ReadCodes => "read_codes", "111102";
    ReserveCodes => "reserve_codes", "111101";
    AssignCode => "assign_code", "101102";
    LinkControlNumber => "link_control_number", "101102";
    Audit => "audit", "audit:read";
    /// With `Audit`: read every tenant's audit although the token acts for one (README "Tenancy").
    AuditAllTenants => "audit_all_tenants", "audit:read_all";
    IssueRequisition => "issue_requisition", "service_request:write";
    ReadRequisition => "read_requisition", "service_request:read";
    WriteLegalEntity => "write_legal_entity", "legal_entity:write";
    WriteDivision => "write_division", "division:write";
    WriteEquipment => "write_equipment", "equipment:write";
    ReadEquipment => "read_equipment", "equipment:read";
    WriteReference => "write_reference", "reference:write";
    ReadClaims => "read_claims", "111001";
    CreateClaim => "create_claim", "111002";
    UpdateClaim => "update_claim", "111010";
    DeleteClaim => "delete_claim", "111004";
    SubmitClaim => "submit_claim", "111007";
    SelectClaimSteps => "select_claim_steps", "111010";
    DeliverFeedback => "deliver_feedback", "111009";
    ReviewClaim => "review_claim", "111008";
    ProcessClaim => "process_claim", "111011";
    RestoreClaim => "restore_claim", "111012";
    PrintClaim => "print_claim", "111006";
    ValuateClaims => "valuate_claims", "111011";
    /// Read the insurees (openIMIS' insuree search); on the FHIR face, `Patient`.
    ReadInsurees => "read_insurees", "101101";
    /// Read the policies (openIMIS' policy search); on the FHIR face, `Coverage`.
    ReadPolicies => "read_policies", "101201";
    /// Register an insuree with a reserved code (openIMIS' insuree add right).
    RegisterInsuree => "register_insuree", "101102";
    /// Enrol an insuree in a policy (openIMIS' policy add right).
    EnrolInPolicy => "enrol_in_policy", "101202";
    /// Read every resource of the FHIR face (`/fhir`): a sync peer's token.
    SyncRead => "sync_read", "sync:read";
    /// Import a peer's Bundle (`POST /fhir`): a sync peer's token.
    SyncWrite => "sync_write", "sync:write";
}

impl Operation {
    pub fn from_key(key: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|o| o.key() == key)
    }
}

/// The permission string each operation needs, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions(HashMap<Operation, String>);

impl Default for Permissions {
    fn default() -> Self {
        Permissions(Operation::ALL.iter().map(|o| (*o, o.default_permission().to_string())).collect())
    }
}

impl Permissions {
    /// The defaults with `op=permission` pairs (comma-separated) put over them.
    pub fn parse(overrides: &str) -> Result<Self, String> {
        let mut permissions = Permissions::default();
        for pair in overrides.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, perm) =
                pair.split_once('=').ok_or_else(|| format!("permission override `{pair}` is not op=perm"))?;
            let operation = Operation::from_key(op.trim())
                .ok_or_else(|| format!("unknown operation `{op}` in permission overrides"))?;
            permissions.0.insert(operation, perm.trim().to_string());
        }
        Ok(permissions)
    }

    pub fn of(&self, operation: Operation) -> &str {
        self.0.get(&operation).map(String::as_str).unwrap_or("")
    }
}

/// One command of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    pub context: Context,
    pub operation: Operation,
}

const fn command(context: Context, name: &'static str, operation: Operation) -> Command {
    Command { name, context, operation }
}

use Context::{Claims, Codes, Insurees, Registry, Requisitions, Sync};

/// Every command of the service.
pub const COMMANDS: &[Command] = &[
    command(Codes, "GenerateCodes", Operation::GenerateCodes),
    command(Codes, "ReserveCodes", Operation::ReserveCodes),
    command(Codes, "AssignCode", Operation::AssignCode),
    command(Codes, "LinkControlNumber", Operation::LinkControlNumber),
    command(Insurees, "RegisterInsuree", Operation::RegisterInsuree),
    command(Insurees, "EnrolInPolicy", Operation::EnrolInPolicy),
    command(Sync, "ImportBundle", Operation::SyncWrite),
    command(Registry, "RegisterLegalEntity", Operation::WriteLegalEntity),
    command(Registry, "ChangeLegalEntityStatus", Operation::WriteLegalEntity),
    command(Registry, "RegisterDivision", Operation::WriteDivision),
    command(Registry, "ChangeDivisionStatus", Operation::WriteDivision),
    command(Registry, "RegisterEquipment", Operation::WriteEquipment),
    command(Registry, "LinkDivision", Operation::WriteEquipment),
    command(Registry, "ChangeEquipmentStatus", Operation::WriteEquipment),
    command(Registry, "ChangeAvailability", Operation::WriteEquipment),
    command(Requisitions, "IssueRequisition", Operation::IssueRequisition),
    command(Claims, "UpsertHealthFacilities", Operation::WriteReference),
    command(Claims, "UpsertMedicalItems", Operation::WriteReference),
    command(Claims, "UpsertMedicalServices", Operation::WriteReference),
    command(Claims, "UpsertPriceLists", Operation::WriteReference),
    command(Claims, "UpsertInsurees", Operation::WriteReference),
    command(Claims, "UpsertProducts", Operation::WriteReference),
    command(Claims, "UpsertPolicies", Operation::WriteReference),
    command(Claims, "CreateClaim", Operation::CreateClaim),
    command(Claims, "UpdateClaim", Operation::UpdateClaim),
    command(Claims, "DeleteClaims", Operation::DeleteClaim),
    command(Claims, "RestoreClaim", Operation::RestoreClaim),
    command(Claims, "SubmitClaims", Operation::SubmitClaim),
    command(Claims, "SelectClaimsForFeedback", Operation::SelectClaimSteps),
    command(Claims, "SkipClaimsFeedback", Operation::SelectClaimSteps),
    command(Claims, "BypassClaimsFeedback", Operation::SelectClaimSteps),
    command(Claims, "DeliverFeedback", Operation::DeliverFeedback),
    command(Claims, "SelectClaimsForReview", Operation::SelectClaimSteps),
    command(Claims, "SkipClaimsReview", Operation::SelectClaimSteps),
    command(Claims, "BypassClaimsReview", Operation::SelectClaimSteps),
    command(Claims, "SaveReview", Operation::ReviewClaim),
    command(Claims, "ProcessClaims", Operation::ProcessClaim),
    command(Claims, "ValuateClaims", Operation::ValuateClaims),
    command(Claims, "AddAttachment", Operation::UpdateClaim),
    command(Claims, "UpdateAttachment", Operation::UpdateClaim),
    command(Claims, "DeleteAttachment", Operation::UpdateClaim),
];

/// The command of the table with that name.
pub fn named(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_operations_keys_too() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        let mut keys: Vec<&str> = Operation::ALL.iter().map(|o| o.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Operation::ALL.len());
    }

    #[test]
    fn overrides_name_operations() {
        let p = Permissions::parse("valuate_claims=scheme:valuate").unwrap();
        assert_eq!(p.of(Operation::ValuateClaims), "scheme:valuate");
        assert_eq!(p.of(Operation::ProcessClaim), "111011");
        assert!(Permissions::parse("nope=x").is_err());
    }
}
