//! sea-orm entities, one module per table. Labels and ports are stored as JSON text.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, sea_orm::EnumIter, sea_orm::DeriveRelation)]
        pub enum Relation {}
        impl sea_orm::ActiveModelBehavior for ActiveModel {}
    };
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub username: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub username: String,
        pub created_at: i64,
        pub last_used_at: i64,
        pub expires_at: i64,
        pub peer: String,
    }
    no_relations!();
}

pub mod api_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub token_hash: String,
        pub role: String,
        pub created_by: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub revoked: bool,
    }
    no_relations!();
}

pub mod enrollment_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrollment_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub token_hash: String,
        pub description: String,
        pub created_by: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub used_by_spawner: String,
        pub revoked: bool,
    }
    no_relations!();
}

pub mod spawner {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "spawners")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub credential_hash: String,
        pub region: String,
        pub host: String,
        pub advertised_address: String,
        pub capacity: i32,
        pub labels: String,
        pub agent_version: String,
        pub active_build: String,
        pub drained: bool,
        pub enrolled_at: i64,
        pub last_seen_at: i64,
    }
    no_relations!();
}

pub mod instance {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub spawner_id: String,
        pub state: String,
        pub build_version: String,
        pub build_name: String,
        pub spawn_settings: String,
        pub ports: String,
        pub pid: i64,
        pub restart_count: i64,
        pub labels: String,
        pub players: i64,
        pub max_players: i64,
        pub created_at: i64,
        pub started_at: i64,
        pub state_changed_at: i64,
        pub exit_code: Option<i64>,
        pub message: String,
        pub display_name: String,
    }
    no_relations!();
}

pub mod audit {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: i64,
        pub actor: String,
        pub action: String,
        pub target: String,
        pub result: String,
        pub detail: String,
        pub peer: String,
    }
    no_relations!();
}

pub mod metric_sample {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_samples")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub at: i64,
        pub cpu: f64,
        pub memory: i64,
        pub disk: i64,
        pub players: i64,
    }
    no_relations!();
}

pub mod build {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "builds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub version: String,
        pub sha256: String,
        pub size: i64,
        pub format: String,
        pub manifest: String,
        pub created_by: String,
        pub created_at: i64,
        pub chunk_count: i64,
        pub file_count: i64,
        pub unpacked_bytes: i64,
    }
    no_relations!();
}

pub mod build_chunk {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "build_chunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub build_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub sha256: String,
        pub size: i64,
    }
    no_relations!();
}

pub mod build_activation {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "build_activations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub selector: String,
        pub build_id: String,
        pub activated_at: i64,
        pub activated_by: String,
    }
    no_relations!();
}

pub mod build_activation_history {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "build_activation_history")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub selector: String,
        pub build_id: String,
        pub activated_at: i64,
        pub activated_by: String,
    }
    no_relations!();
}

pub mod fleet {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// FleetSpec, protobuf-encoded, in hex.
        pub spec: String,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod setting {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        pub value: String,
        pub updated_by: String,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod setting_change {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "setting_changes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub key: String,
        pub scope: String,
        pub old_value: Option<String>,
        pub new_value: Option<String>,
        pub actor: String,
        pub at: i64,
    }
    no_relations!();
}
