package kdapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const deptJSON = `{"id":"1319678187126486144","orgId":"9190086000001210958","deptId":"a4fd0d798f5344ccac2c695646ef66d3","parentId":1243693141656107521,"name":"Sales","tenantId":"t1"}`

var deptSales = Department{ID: "1319678187126486144", OrgID: "9190086000001210958", DeptID: "a4fd0d798f5344ccac2c695646ef66d3",
	ParentID: "1243693141656107521", Name: "Sales", TenantID: "t1"}

func TestListDepartments(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		opts     ListDepartmentsOptions
		wantURI  string
		response string
		want     []Department
	}{
		"root": {
			wantURI:  APIPath + "/departmentList",
			response: `{"code":0,"msg":"success","data":[` + deptJSON + `]}`,
			want:     []Department{deptSales},
		},
		"children filtered by name": {
			opts:     ListDepartmentsOptions{DepartmentID: "1243693141656107521", KeyWord: "Sales & Ops"},
			wantURI:  APIPath + "/departmentList?departmentId=1243693141656107521&keyWord=Sales%20%26%20Ops",
			response: `{"code":"0","data":[` + deptJSON + `,{"id":"2","name":"B"}]}`,
			want:     []Department{deptSales, {ID: "2", Name: "B"}},
		},
		"no data": {
			wantURI:  APIPath + "/departmentList",
			response: `{"code":0,"msg":"success"}`,
			want:     nil,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/departmentList", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testURI(t, r, tc.wantURI)
				testSigned(t, r, "")
				fmt.Fprint(w, tc.response)
			})
			got, err := client.ListDepartments(t.Context(), tc.opts)
			if err != nil {
				t.Fatalf("ListDepartments: %v", err)
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("ListDepartments = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestListDepartments_BadPayload(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/departmentList", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"code":0,"data":{"id":"not a list"}}`)
	})
	_, err := client.ListDepartments(t.Context(), ListDepartmentsOptions{})
	testClass(t, err, ErrPermanent)
}

func TestGetDepartment(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		// GetDepartment's documented answer: the fields at the top level.
		"flat payload": `{"id":"1319678187126486144","orgId":"9190086000001210958","deptId":"a4fd0d798f5344ccac2c695646ef66d3","parentId":1243693141656107521,"name":"Sales","tenantId":"t1","code":0,"msg":"success"}`,
		"under data":   `{"code":"0","msg":"success","data":` + deptJSON + `}`,
	}
	for name, response := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/departments/1319678187126486144", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testURI(t, r, APIPath+"/departments/1319678187126486144")
				testSigned(t, r, TraceID("dept"))
				fmt.Fprint(w, response)
			})
			got, err := client.GetDepartment(WithTraceID(t.Context(), "dept"), "1319678187126486144")
			if err != nil {
				t.Fatalf("GetDepartment: %v", err)
			}
			if !cmp.Equal(got, &deptSales) {
				t.Errorf("GetDepartment = %+v, want %+v", got, deptSales)
			}
		})
	}
}

func TestGetDepartment_NotFound(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/departments/404", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"code":404,"msg":"no such department"}`)
	})
	d, err := client.GetDepartment(t.Context(), "404")
	if d != nil {
		t.Errorf("GetDepartment returned %+v", d)
	}
	testClass(t, err, ErrNotFound)
}
