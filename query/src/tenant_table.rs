//! One table over the tenants a caller may see, with a `tenant` column.
//!
//! Files of different tenants live under different prefixes and carry no
//! tenant column of their own (DESIGN.md, storage layout), so a session's
//! `events` is the union of one scan per tenant in its scope, each adding its
//! tenant as a constant. Before any file is opened, a filter on `tenant`
//! (`=` or `IN` of literals) drops whole tenants and bounds on `time`
//! (`<`, `<=`, `>`, `>=`, `=`, `BETWEEN` with literals) drop the files whose
//! catalog time range lies outside; every other filter goes down to each
//! tenant's Parquet scan for row-group, page and bloom-filter pruning.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use spoor_common::catalog::CatalogFile;
use spoor_common::storage::LAKE_URL;
use spoor_common::tenant::TenantId;

/// The name of the column every table gets.
pub const TENANT_COLUMN: &str = "tenant";

/// A table made of each tenant's files, all with the same schema (text
/// columns as `Utf8View`, see [`view_types`]).
#[derive(Debug)]
pub struct TenantTable {
    /// The files' schema.
    base: SchemaRef,
    /// The files' schema plus `tenant` last.
    schema: SchemaRef,
    /// Per tenant, its files as the catalog lists them.
    parts: Vec<(TenantId, Vec<CatalogFile>)>,
}

impl TenantTable {
    /// The union of `parts`, whose files have the schema `base`.
    pub fn new(base: &SchemaRef, parts: Vec<(TenantId, Vec<CatalogFile>)>) -> Self {
        let base = &view_types(base);
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(TENANT_COLUMN, DataType::Utf8, false));
        TenantTable {
            base: base.clone(),
            schema: Arc::new(Schema::new_with_metadata(fields, base.metadata().clone())),
            parts,
        }
    }

    fn tenant_index(&self) -> usize {
        self.schema.fields().len() - 1
    }
}

/// `base` with its text columns read as `Utf8View`: Parquet strings decode
/// into views without copying, and DataFusion's filters, group-bys and joins
/// on views are faster (about twice, on the hunting benchmark's top-N
/// group-by and indicator join).
fn view_types(base: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = base
        .fields()
        .iter()
        .map(|f| {
            if f.data_type() == &DataType::Utf8 {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, base.metadata().clone()))
}

/// A Parquet listing of exactly `files`.
fn listing(base: &SchemaRef, files: &[&CatalogFile]) -> Result<Arc<dyn TableProvider>> {
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(format!("{LAKE_URL}{}", f.file.object_key)))
        .collect::<Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(base.clone());
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The time range (inclusive, microseconds) filters on `time` allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeRange {
    from: i64,
    to: i64,
}

impl TimeRange {
    const ALL: TimeRange = TimeRange {
        from: i64::MIN,
        to: i64::MAX,
    };

    fn overlaps(&self, file: &CatalogFile) -> bool {
        file.file.max_time_micros >= self.from && file.file.min_time_micros <= self.to
    }

    /// Narrows by one filter when it bounds `time` by a literal.
    fn narrow(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (time_column(left), time_column(right)) {
                    (true, false) => (*op, micros(right)),
                    (false, true) => (op.swap().unwrap_or(*op), micros(left)),
                    _ => return,
                };
                let Some(v) = value else { return };
                match op {
                    Operator::Eq => {
                        self.from = self.from.max(v);
                        self.to = self.to.min(v);
                    }
                    Operator::Gt | Operator::GtEq => self.from = self.from.max(v),
                    Operator::Lt | Operator::LtEq => self.to = self.to.min(v),
                    _ => {}
                }
            }
            Expr::Between(between) if !between.negated && time_column(&between.expr) => {
                if let (Some(lo), Some(hi)) = (micros(&between.low), micros(&between.high)) {
                    self.from = self.from.max(lo);
                    self.to = self.to.min(hi);
                }
            }
            _ => {}
        }
    }
}

fn time_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == "time",
        // Comparisons against a differently typed literal cast the column.
        Expr::Cast(cast) => time_column(&cast.expr),
        Expr::TryCast(cast) => time_column(&cast.expr),
        _ => false,
    }
}

/// A timestamp literal in microseconds (rounded outward is not needed: a
/// file is kept when any of its microseconds may match).
fn micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

/// Whether `expr` reads the `tenant` column.
fn reads_tenant(expr: &Expr) -> bool {
    expr.column_refs().iter().any(|c| c.name == TENANT_COLUMN)
}

fn tenant_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(value, _) => crate::functions::scalar_text(value).map(str::to_string),
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
        let mut range = TimeRange::ALL;
        filters.iter().for_each(|f| range.narrow(f));
        let mut plans = Vec::new();
        for (tenant, files) in &self.parts {
            if allowed
                .as_ref()
                .is_some_and(|a| !a.contains(tenant.as_str()))
            {
                continue;
            }
            let files: Vec<&CatalogFile> = files.iter().filter(|f| range.overlaps(f)).collect();
            if files.is_empty() {
                continue;
            }
            let scan = listing(&self.base, &files)?
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
