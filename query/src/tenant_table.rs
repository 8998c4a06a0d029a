//! One table over the tenants a caller may see, with a `tenant` column.
//!
//! Files of different tenants live under different prefixes and carry no
//! tenant column of their own (DESIGN.md, storage layout), so a session's
//! `events` is the union of one scan per tenant in its scope, each adding its
//! tenant as a constant. A filter on `tenant` (`=` or `IN` of literals)
//! drops whole tenants before any of their files is opened; every other
//! filter goes down to each tenant's Parquet scan for row-group, page and
//! bloom-filter pruning.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use spoor_common::tenant::TenantId;

/// The name of the column every table gets.
pub const TENANT_COLUMN: &str = "tenant";

/// A table made of one provider per tenant, all with the same schema.
#[derive(Debug)]
pub struct TenantTable {
    /// The parts' schema plus `tenant` last.
    schema: SchemaRef,
    /// Per tenant, its own table (without a tenant column).
    parts: Vec<(TenantId, Arc<dyn TableProvider>)>,
}

impl TenantTable {
    /// The union of `parts`, whose schema is `base`.
    pub fn new(base: &Schema, parts: Vec<(TenantId, Arc<dyn TableProvider>)>) -> Self {
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(TENANT_COLUMN, DataType::Utf8, false));
        TenantTable {
            schema: Arc::new(Schema::new_with_metadata(fields, base.metadata().clone())),
            parts,
        }
    }

    fn tenant_index(&self) -> usize {
        self.schema.fields().len() - 1
    }
}

/// Whether `expr` reads the `tenant` column.
fn reads_tenant(expr: &Expr) -> bool {
    expr.column_refs().iter().any(|c| c.name == TENANT_COLUMN)
}

fn tenant_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn is_tenant_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Column(c) if c.name == TENANT_COLUMN)
}

/// The tenants a filter allows, when it is `tenant = '…'` or
/// `tenant IN ('…', …)`; `None` when it does not say (all may match).
fn tenants_allowed(expr: &Expr) -> Option<BTreeSet<String>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_tenant_column(left) {
                tenant_literal(right).map(|t| BTreeSet::from([t]))
            } else if is_tenant_column(right) {
                tenant_literal(left).map(|t| BTreeSet::from([t]))
            } else {
                None
            }
        }
        Expr::InList(list) if !list.negated && is_tenant_column(&list.expr) => {
            list.list.iter().map(tenant_literal).collect()
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for TenantTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion still applies every filter above the scan; the
        // scan only uses them to skip tenants, files, row groups and pages.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tenant_index = self.tenant_index();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let output_schema = Arc::new(self.schema.project(&wanted)?);
        let mut allowed: Option<BTreeSet<String>> = None;
        for filter in filters.iter().filter(|f| reads_tenant(f)) {
            if let Some(set) = tenants_allowed(filter) {
                allowed = Some(match allowed {
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                    None => set,
                });
            }
        }
        let part_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| !reads_tenant(f))
            .cloned()
            .collect();
        // The columns each part reads: the projection without `tenant`.
        let part_projection: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|&i| i != tenant_index)
            .collect();
        let mut plans = Vec::new();
        for (tenant, part) in &self.parts {
            if allowed
                .as_ref()
                .is_some_and(|a| !a.contains(tenant.as_str()))
            {
                continue;
            }
            let scan = part
                .scan(state, Some(&part_projection), &part_filters, limit)
                .await?;
            let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
            let mut next_part_column = 0;
            for &i in &wanted {
                let name = self.schema.field(i).name().clone();
                if i == tenant_index {
                    exprs.push((
                        Arc::new(Literal::new(ScalarValue::Utf8(Some(
                            tenant.as_str().to_string(),
                        )))),
                        name,
                    ));
                } else {
                    exprs.push((Arc::new(Column::new(&name, next_part_column)), name));
                    next_part_column += 1;
                }
            }
            plans.push(Arc::new(ProjectionExec::try_new(exprs, scan)?) as Arc<dyn ExecutionPlan>);
        }
        if plans.is_empty() {
            return Ok(Arc::new(EmptyExec::new(output_schema)));
        }
        UnionExec::try_new(plans)
    }
}
