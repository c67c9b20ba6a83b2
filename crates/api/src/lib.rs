//! temporary stub
use k8rs_machinery::validation::FieldError;
pub trait ApiType: k8s_openapi::Resource + Sized {
    fn set_defaults(&mut self) {}
    fn validate(&self) -> Vec<FieldError> {
        vec![]
    }
    fn validate_update(&self, _old: &Self) -> Vec<FieldError> {
        vec![]
    }
}
impl<T: k8s_openapi::Resource> ApiType for T {}
